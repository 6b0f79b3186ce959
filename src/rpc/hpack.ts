/**
 * HPACK (RFC 7541): a decoder for the header blocks a client sends and a small
 * encoder for ours. The encoder never indexes and never Huffman-codes, so our
 * side of the connection has no compression state; the decoder must keep the
 * peer's dynamic table in step across every block on the connection.
 */
import { HuffmanError, huffmanDecode } from './huffman';

/** Malformed header block: the HTTP/2 connection must end with COMPRESSION_ERROR. */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HpackError';
  }
}

/** The block was decoded (the dynamic table is in sync) but its header list is larger than allowed. */
export class HeaderListTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HeaderListTooLargeError';
  }
}

/** RFC 7541 Appendix A; index 0 is unused so that an HPACK index is an array index. */
// prettier-ignore
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  ['', ''],
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''],
  ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''],
  ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''],
  ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''],
  ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC_TABLE.length - 1;
const STATIC_NAMES: readonly string[] = STATIC_TABLE.map((entry) => entry[0]);
const STATIC_VALUES: readonly string[] = STATIC_TABLE.map((entry) => entry[1]);

/** The first static index of each name, for the encoder's indexed names. */
const STATIC_NAME_INDEX = new Map<string, number>();
for (let i = STATIC_COUNT; i >= 1; i--) STATIC_NAME_INDEX.set(STATIC_NAMES[i], i);

/** RFC 7541 §4.1: the size an entry counts for, in the table and in a header list (RFC 9113 §6.5.2). */
const ENTRY_OVERHEAD = 32;
const MAX_INT = 0x7fffffff;
const EMPTY = Buffer.alloc(0);
/* 2^31-1 needs at most five continuation bytes after a full prefix; more is
 * either overflow or padding with zero groups, which only an attacker sends. */
const MAX_CONTINUATION_BYTES = 5;

/**
 * The peer's dynamic table (RFC 7541 §2.3.2, §4): a ring of entries, newest
 * first, whose capacity grows by doubling up to what the largest allowed
 * table size can hold.
 */
class DynamicTable {
  private names: string[] = new Array<string>(16).fill('');
  private values: string[] = new Array<string>(16).fill('');
  /** Slot of the newest entry. */
  private head = 0;
  count = 0;
  size = 0;

  constructor(public maxSize: number) {}

  /** Entry `i` (0 = newest); the caller checks `i < count`. */
  name(i: number): string {
    return this.names[(this.head + i) & (this.names.length - 1)];
  }

  value(i: number): string {
    return this.values[(this.head + i) & (this.values.length - 1)];
  }

  add(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    // §4.4: an entry larger than the table empties it and is not added.
    this.evictTo(this.maxSize - entrySize);
    if (entrySize > this.maxSize) return;
    if (this.count === this.names.length) this.grow();
    const mask = this.names.length - 1;
    this.head = (this.head - 1) & mask;
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.count++;
    this.size += entrySize;
  }

  resize(maxSize: number): void {
    this.maxSize = maxSize;
    this.evictTo(maxSize);
  }

  /** Drops the oldest entries until the table's size is at most `limit` (which may be negative). */
  private evictTo(limit: number): void {
    const mask = this.names.length - 1;
    while (this.count > 0 && this.size > limit) {
      const slot = (this.head + this.count - 1) & mask;
      this.size -= this.names[slot].length + this.values[slot].length + ENTRY_OVERHEAD;
      // Let the strings be collected now rather than when the slot is reused.
      this.names[slot] = '';
      this.values[slot] = '';
      this.count--;
    }
  }

  /** Doubles the ring, moving entries to slots 0..count-1 so that their order survives the new mask. */
  private grow(): void {
    const names = new Array<string>(this.names.length * 2).fill('');
    const values = new Array<string>(this.values.length * 2).fill('');
    for (let i = 0; i < this.count; i++) {
      names[i] = this.name(i);
      values[i] = this.value(i);
    }
    this.names = names;
    this.values = values;
    this.head = 0;
  }
}

export class HpackDecoder {
  private readonly table: DynamicTable;
  /* The block being decoded, kept in fields rather than passed around so that
   * the readers can return a single number or string. */
  private buf: Buffer = EMPTY;
  private pos = 0;

  /**
   * @param maxTableSize our SETTINGS_HEADER_TABLE_SIZE (default 4096): the largest dynamic table size the peer may choose via a size update.
   * @param maxHeaderListSize the largest header list (RFC 9113 §6.5.2 size: sum of name length + value length + 32 per field) we accept.
   */
  constructor(
    private readonly maxTableSize = 4096,
    private readonly maxHeaderListSize = Infinity,
  ) {
    this.table = new DynamicTable(maxTableSize);
  }

  /** The dynamic table's current size in bytes (RFC 7541 §4.1). */
  get tableSize(): number {
    return this.table.size;
  }

  /**
   * Decodes one complete header block (HEADERS + CONTINUATION payloads already joined, padding and priority already removed).
   * Returns the fields in order as a flat array [name0, value0, name1, value1, ...] (strings decoded as latin1).
   * Throws HpackError on malformed input. If the header list exceeds maxHeaderListSize it still decodes the
   * whole block, so that the dynamic table stays in sync and the connection can go on, but stops collecting
   * fields and throws HeaderListTooLargeError at the end.
   */
  decode(block: Buffer): string[] {
    this.buf = block;
    this.pos = 0;
    try {
      return this.decodeFields();
    } finally {
      // Do not keep the caller's buffer (often a slice of a large read) alive.
      this.buf = EMPTY;
    }
  }

  private decodeFields(): string[] {
    const fields: string[] = [];
    const end = this.buf.length;
    let listSize = 0;
    let tooLarge = false;
    let fieldSeen = false;
    while (this.pos < end) {
      const first = this.buf[this.pos];
      let name: string;
      let value: string;
      if (first & 0x80) {
        // §6.1 indexed header field
        const index = this.readInt(7);
        name = this.nameAt(index);
        value = this.valueAt(index);
      } else if (first & 0x40) {
        // §6.2.1 literal with incremental indexing
        name = this.readLiteralName(6);
        value = this.readString();
        this.table.add(name, value);
      } else if (first & 0x20) {
        // §6.3 dynamic table size update; §4.2 allows it only before the first field
        if (fieldSeen) throw new HpackError('dynamic table size update after a header field');
        this.sizeUpdate(this.readInt(5));
        continue;
      } else {
        // §6.2.2 without indexing, §6.2.3 never indexed: both 4-bit prefixes, neither touches the table
        name = this.readLiteralName(4);
        value = this.readString();
      }
      fieldSeen = true;
      if (tooLarge) continue;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize > this.maxHeaderListSize) {
        tooLarge = true;
        continue;
      }
      fields.push(name, value);
    }
    if (tooLarge) throw new HeaderListTooLargeError(`header list larger than ${this.maxHeaderListSize} bytes`);
    return fields;
  }

  private sizeUpdate(size: number): void {
    if (size > this.maxTableSize) {
      throw new HpackError(`dynamic table size update to ${size}, above the maximum ${this.maxTableSize}`);
    }
    this.table.resize(size);
  }

  /** The name of a literal field: from the tables if the `prefixBits` index is not 0, else a string that follows. */
  private readLiteralName(prefixBits: number): string {
    const index = this.readInt(prefixBits);
    return index === 0 ? this.readString() : this.nameAt(index);
  }

  private nameAt(index: number): string {
    if (index === 0) throw new HpackError('header field index 0');
    if (index <= STATIC_COUNT) return STATIC_NAMES[index];
    return this.table.name(this.dynamicSlot(index));
  }

  private valueAt(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_VALUES[index];
    return this.table.value(this.dynamicSlot(index));
  }

  private dynamicSlot(index: number): number {
    const i = index - STATIC_COUNT - 1;
    if (i >= this.table.count) throw new HpackError(`header field index ${index} past the tables`);
    return i;
  }

  /** §5.1: an integer with an N-bit prefix starting at the current byte, whose higher bits are the caller's. */
  private readInt(prefixBits: number): number {
    const buf = this.buf;
    const max = (1 << prefixBits) - 1;
    let value = buf[this.pos++] & max;
    if (value < max) return value;
    let scale = 1;
    for (let i = 0; i < MAX_CONTINUATION_BYTES; i++) {
      if (this.pos >= buf.length) throw new HpackError('truncated integer');
      const byte = buf[this.pos++];
      // Multiplication rather than shifts: the sum may pass 2^31 before the check.
      value += (byte & 0x7f) * scale;
      if (value > MAX_INT) throw new HpackError('integer larger than 2^31-1');
      if ((byte & 0x80) === 0) return value;
      scale *= 128;
    }
    throw new HpackError('integer with too many continuation bytes');
  }

  /** §5.2: a string literal, Huffman-coded or raw. */
  private readString(): string {
    if (this.pos >= this.buf.length) throw new HpackError('truncated header field');
    const huffman = (this.buf[this.pos] & 0x80) !== 0;
    const length = this.readInt(7);
    const start = this.pos;
    const end = start + length;
    if (end > this.buf.length) throw new HpackError('string literal past the end of the header block');
    this.pos = end;
    if (!huffman) return this.buf.toString('latin1', start, end);
    try {
      return huffmanDecode(this.buf, start, end);
    } catch (err) {
      if (err instanceof HuffmanError) throw new HpackError(err.message);
      throw err;
    }
  }
}


/** The bytes of an integer with an N-bit prefix (§5.1). */
function intLength(value: number, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) return 1;
  let length = 2;
  for (let rest = value - max; rest >= 128; rest = Math.floor(rest / 128)) length++;
  return length;
}

/** Writes an integer with an N-bit prefix whose higher bits are `flags`; returns the offset after it. */
function writeInt(out: Buffer, at: number, value: number, prefixBits: number, flags: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[at++] = flags | value;
    return at;
  }
  out[at++] = flags | max;
  let rest = value - max;
  while (rest >= 128) {
    out[at++] = (rest % 128) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[at++] = rest;
  return at;
}

/** §6.2.2 literal without indexing, with an indexed name: 0000 + 4-bit index. */
const WITHOUT_INDEXING = 0x00;
/** §6.3 dynamic table size update: 001 + 5-bit size. */
const SIZE_UPDATE = 0x20;

/**
 * Encodes response header fields as one header block: every field as "literal header field without indexing"
 * (RFC 7541 §6.2.2), using the static table's name index when the name is in it, otherwise a literal name;
 * strings without Huffman coding. If `tableSizeUpdate` is given, the block starts with a dynamic table size
 * update to that size. Names must already be lowercase; names and values are written as latin1.
 */
export function encodeHeaderBlock(fields: readonly string[], tableSizeUpdate?: number): Buffer {
  // Measure first so that the block is a single allocation.
  let length = tableSizeUpdate === undefined ? 0 : intLength(tableSizeUpdate, 5);
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    const index = STATIC_NAME_INDEX.get(name);
    length += index === undefined ? 1 + intLength(name.length, 7) + name.length : intLength(index, 4);
    length += intLength(value.length, 7) + value.length;
  }
  const out = Buffer.allocUnsafe(length);
  let at = tableSizeUpdate === undefined ? 0 : writeInt(out, 0, tableSizeUpdate, 5, SIZE_UPDATE);
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    const index = STATIC_NAME_INDEX.get(name);
    if (index === undefined) {
      out[at++] = WITHOUT_INDEXING;
      at = writeString(out, at, name);
    } else {
      at = writeInt(out, at, index, 4, WITHOUT_INDEXING);
    }
    at = writeString(out, at, value);
  }
  return out;
}

/** A raw (not Huffman-coded) string literal. */
function writeString(out: Buffer, at: number, text: string): number {
  at = writeInt(out, at, text.length, 7, 0);
  return at + out.write(text, at, 'latin1');
}
