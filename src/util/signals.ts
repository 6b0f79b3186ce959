import os from 'node:os';

/** A signal's number, for exit statuses in the shell's 128+N form. */
export const signalNumber = (signal: NodeJS.Signals): number => os.constants.signals[signal] ?? 0;
