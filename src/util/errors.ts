/**
 * An error a user can act on. `message` is one line that says what is wrong
 * and, where it helps, what to do; `detail` holds supporting lines (for
 * example the verifier's last lines) that the CLI prints after it.
 */
export class RingfenceError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'RingfenceError';
  }
}
