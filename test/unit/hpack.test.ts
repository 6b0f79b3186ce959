/** HPACK and its Huffman code against RFC 7541's examples, malformed blocks and a reference model of the table. */
import { describe, expect, it } from 'vitest';
import { encodeHeaderBlock, HeaderListTooLargeError, HpackDecoder, HpackError } from '../../src/rpc/hpack';
import { huffmanDecode, huffmanEncode, HuffmanError } from '../../src/rpc/huffman';

/** The RFC's hex dumps, spaces and line breaks allowed. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** §5.1 integer with an N-bit prefix under `flags`, for building blocks by hand. */
function int(value: number, prefixBits: number, flags = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** §5.2 string literal. */
function str(text: string, huffman = false): number[] {
  const bytes = huffman ? huffmanEncode(text) : Buffer.from(text, 'latin1');
  return [...int(bytes.length, 7, huffman ? 0x80 : 0), ...bytes];
}

/** §6.2.1 literal with incremental indexing and a new name. */
function indexedLiteral(name: string, value: string, huffman = false): number[] {
  return [0x40, ...str(name, huffman), ...str(value, huffman)];
}

function block(...parts: number[][]): Buffer {
  return Buffer.from(parts.flat());
}

/** A small seeded generator, so that a failure can be reproduced. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomLatin1(next: () => number, length: number): string {
  let text = '';
  for (let i = 0; i < length; i++) text += String.fromCharCode(Math.floor(next() * 256));
  return text;
}

describe('huffman', () => {
  it('round-trips every byte value, alone and together', () => {
    let all = '';
    for (let b = 0; b < 256; b++) {
      const text = String.fromCharCode(b);
      all += text;
      const coded = huffmanEncode(text);
      expect(huffmanDecode(coded, 0, coded.length)).toBe(text);
    }
    const coded = huffmanEncode(all);
    expect(huffmanDecode(coded, 0, coded.length)).toBe(all);
  });

  it('round-trips random strings, including ones longer than the decode buffer', () => {
    const next = random(7541);
    for (let n = 0; n < 300; n++) {
      const text = randomLatin1(next, n === 299 ? 20_000 : Math.floor(next() * 120));
      const coded = huffmanEncode(text);
      expect(huffmanDecode(coded, 0, coded.length)).toBe(text);
    }
  });

  it('decodes from the middle of a buffer', () => {
    const coded = huffmanEncode('custom-key');
    const buf = Buffer.concat([Buffer.from([1, 2, 3]), coded, Buffer.from([0, 0])]);
    expect(huffmanDecode(buf, 3, 3 + coded.length)).toBe('custom-key');
  });

  it('matches the RFC examples', () => {
    expect(huffmanEncode('www.example.com')).toEqual(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff'));
    expect(huffmanEncode('no-cache')).toEqual(hex('a8eb 1064 9cbf'));
    expect(huffmanEncode('custom-key')).toEqual(hex('25a8 49e9 5ba9 7d7f'));
    expect(huffmanEncode('custom-value')).toEqual(hex('25a8 49e9 5bb8 e8b4 bf'));
    expect(huffmanEncode('')).toEqual(Buffer.alloc(0));
    expect(huffmanDecode(Buffer.alloc(0), 0, 0)).toBe('');
  });

  it('rejects EOS in the data', () => {
    // 30 ones are EOS; the two after it are padding.
    expect(() => huffmanDecode(hex('ffffffff'), 0, 4)).toThrow(HuffmanError);
    // EOS after a symbol ('a' is 00011).
    expect(() => huffmanDecode(hex('1fffffffff'), 0, 5)).toThrow(HuffmanError);
  });

  it('rejects padding longer than 7 bits', () => {
    expect(() => huffmanDecode(hex('ff'), 0, 1)).toThrow(HuffmanError);
    // 'a' then eleven ones.
    expect(() => huffmanDecode(hex('1fff'), 0, 2)).toThrow(HuffmanError);
    // A whole byte of ones after symbols that end on a byte boundary: '0' 00000, '1' 00001, ' ' 010100.
    expect(huffmanDecode(hex('0054'), 0, 2)).toBe('01 ');
    expect(() => huffmanDecode(hex('0054ff'), 0, 3)).toThrow(HuffmanError);
  });

  it('rejects padding that is not all ones', () => {
    // 'a' (00011) then 000, 110 and 011.
    expect(huffmanDecode(hex('1f'), 0, 1)).toBe('a');
    expect(() => huffmanDecode(hex('18'), 0, 1)).toThrow(HuffmanError);
    expect(() => huffmanDecode(hex('1e'), 0, 1)).toThrow(HuffmanError);
    expect(() => huffmanDecode(hex('1b'), 0, 1)).toThrow(HuffmanError);
  });
});

describe('HpackDecoder on RFC 7541 Appendix C', () => {
  it('C.2.1 literal with indexing', () => {
    const decoder = new HpackDecoder();
    const fields = decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    expect(fields).toEqual(['custom-key', 'custom-header']);
    expect(decoder.tableSize).toBe(55);
  });

  it('C.2.2 literal without indexing', () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex('040c 2f73 616d 706c 652f 7061 7468'))).toEqual([':path', '/sample/path']);
    expect(decoder.tableSize).toBe(0);
  });

  it('C.2.3 literal never indexed', () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74'))).toEqual(['password', 'secret']);
    expect(decoder.tableSize).toBe(0);
  });

  it('C.2.4 indexed field', () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex('82'))).toEqual([':method', 'GET']);
    expect(decoder.tableSize).toBe(0);
  });

  const request1 = [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com'];
  const request2 = [...request1, 'cache-control', 'no-cache'];
  const request3 = [
    ':method', 'GET', ':scheme', 'https', ':path', '/index.html', ':authority', 'www.example.com',
    'custom-key', 'custom-value',
  ];

  it('C.3 requests without Huffman coding', () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'))).toEqual(request1);
    expect(decoder.tableSize).toBe(57);
    expect(decoder.decode(hex('8286 84be 5808 6e6f 2d63 6163 6865'))).toEqual(request2);
    expect(decoder.tableSize).toBe(110);
    expect(
      decoder.decode(hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65')),
    ).toEqual(request3);
    expect(decoder.tableSize).toBe(164);
  });

  it('C.4 requests with Huffman coding', () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'))).toEqual(request1);
    expect(decoder.tableSize).toBe(57);
    expect(decoder.decode(hex('8286 84be 5886 a8eb 1064 9cbf'))).toEqual(request2);
    expect(decoder.tableSize).toBe(110);
    expect(decoder.decode(hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'))).toEqual(request3);
    expect(decoder.tableSize).toBe(164);
  });

  const response1 = [
    ':status', '302', 'cache-control', 'private', 'date', 'Mon, 21 Oct 2013 20:13:21 GMT',
    'location', 'https://www.example.com',
  ];
  const response2 = [...response1];
  response2[1] = '307';
  const response3 = [
    ':status', '200', 'cache-control', 'private', 'date', 'Mon, 21 Oct 2013 20:13:22 GMT',
    'location', 'https://www.example.com', 'content-encoding', 'gzip',
    'set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1',
  ];

  it('C.5 responses without Huffman coding, with evictions from a 256-byte table', () => {
    const decoder = new HpackDecoder(256);
    expect(
      decoder.decode(
        hex(`4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032
             303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`),
      ),
    ).toEqual(response1);
    expect(decoder.tableSize).toBe(222);
    expect(decoder.decode(hex('4803 3330 37c1 c0bf'))).toEqual(response2);
    expect(decoder.tableSize).toBe(222);
    expect(
      decoder.decode(
        hex(`88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0
             5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851
             5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`),
      ),
    ).toEqual(response3);
    expect(decoder.tableSize).toBe(215);
  });

  it('C.6 responses with Huffman coding, with evictions from a 256-byte table', () => {
    const decoder = new HpackDecoder(256);
    expect(
      decoder.decode(
        hex(`4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b
             ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`),
      ),
    ).toEqual(response1);
    expect(decoder.tableSize).toBe(222);
    expect(decoder.decode(hex('4883 640e ffc1 c0bf'))).toEqual(response2);
    expect(decoder.tableSize).toBe(222);
    expect(
      decoder.decode(
        hex(`88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad
             94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160
             65c0 03ed 4ee5 b106 3d50 07`),
      ),
    ).toEqual(response3);
    expect(decoder.tableSize).toBe(215);
  });
});

describe('HpackDecoder', () => {
  it('decodes an empty block', () => {
    expect(new HpackDecoder().decode(Buffer.alloc(0))).toEqual([]);
  });

  it('accepts size updates at the start of a block and evicts to the new size', () => {
    const decoder = new HpackDecoder();
    decoder.decode(block(indexedLiteral('a', '1'), indexedLiteral('b', '2')));
    expect(decoder.tableSize).toBe(68);
    // Two updates in a row are allowed (§4.2): shrink to one entry, then grow back.
    expect(decoder.decode(block(int(40, 5, 0x20), int(4096, 5, 0x20), [0xbe]))).toEqual(['b', '2']);
    expect(decoder.tableSize).toBe(34);
    expect(() => decoder.decode(block([0xbf]))).toThrow(HpackError);
    decoder.decode(block(int(0, 5, 0x20)));
    expect(decoder.tableSize).toBe(0);
    expect(() => decoder.decode(block([0xbe]))).toThrow(HpackError);
  });

  it('empties the table for an entry larger than it, without adding the entry', () => {
    const decoder = new HpackDecoder(100);
    decoder.decode(block(indexedLiteral('a', '1')));
    expect(decoder.decode(block(indexedLiteral('big', 'x'.repeat(80))))).toEqual(['big', 'x'.repeat(80)]);
    expect(decoder.tableSize).toBe(0);
    expect(() => decoder.decode(block([0xbe]))).toThrow(HpackError);
  });

  it('keeps the table in step with a reference model through random additions, lookups and resizes', () => {
    const next = random(42);
    const maxTableSize = 2048;
    const decoder = new HpackDecoder(maxTableSize);
    const model: [string, string][] = [];
    let modelMax = maxTableSize;
    const modelSize = () => model.reduce((n, [name, value]) => n + name.length + value.length + 32, 0);
    const evict = () => {
      while (modelSize() > modelMax) model.pop();
    };
    for (let round = 0; round < 400; round++) {
      const parts: number[][] = [];
      const expected: string[] = [];
      if (next() < 0.1) {
        modelMax = Math.floor(next() * (maxTableSize + 1));
        parts.push(int(modelMax, 5, 0x20));
        evict();
      }
      for (let f = Math.floor(next() * 6); f > 0; f--) {
        if (model.length > 0 && next() < 0.5) {
          const i = Math.floor(next() * model.length);
          parts.push(int(62 + i, 7, 0x80));
          expected.push(...model[i]);
        } else {
          const name = `n${Math.floor(next() * 1000)}`;
          const value = randomLatin1(next, Math.floor(next() * 200));
          parts.push(indexedLiteral(name, value, next() < 0.5));
          expected.push(name, value);
          model.unshift([name, value]);
          evict();
        }
      }
      expect(decoder.decode(block(...parts))).toEqual(expected);
      expect(decoder.tableSize).toBe(modelSize());
    }
  });

  it('decodes literals that name a dynamic entry, and never-indexed literals leave the table alone', () => {
    const decoder = new HpackDecoder();
    decoder.decode(block(indexedLiteral('x-trace', 'abc')));
    // 0x0f 0x2f: without indexing, name index 62 (15 + 47); 0x1f 0x2f: never indexed, same name.
    const fields = decoder.decode(block([0x0f, 0x2f], str('def'), [0x1f, 0x2f], str('ghi', true)));
    expect(fields).toEqual(['x-trace', 'def', 'x-trace', 'ghi']);
    expect(decoder.tableSize).toBe(42);
  });

  describe('rejects malformed blocks with HpackError', () => {
    const cases: [string, Buffer][] = [
      ['index 0', block([0x80])],
      ['an index past the static table with an empty dynamic table', block([0xbe])],
      ['an index far past the tables', block(int(5000, 7, 0x80))],
      ['a literal whose name index is past the tables', block(int(70, 6, 0x40), str('v'))],
      ['a truncated integer', block([0xff, 0x80])],
      ['a truncated integer at the end of the prefix', block([0xff])],
      ['an integer above 2^31-1', block([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])],
      ['an integer with too many continuation bytes', block([0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00])],
      ['a string running past the end', block([0x00, 0x05, 0x61, 0x62])],
      ['a literal with no value', block([0x00], str('name'))],
      ['a string length running past the end', block([0x00, 0x7f, 0x80])],
      ['a size update above the maximum', block(int(4097, 5, 0x20))],
      ['a size update after a field', block([0x82], int(0, 5, 0x20))],
      ['a Huffman string with EOS', block([0x00, 0x81, 0x1f, 0x84, 0xff, 0xff, 0xff, 0xff])],
      ['a Huffman string with bad padding', block([0x00, 0x81, 0x1f, 0x81, 0x18])],
    ];
    for (const [what, input] of cases) {
      it(what, () => {
        expect(() => new HpackDecoder().decode(input)).toThrow(HpackError);
      });
    }
  });

  it('accepts the largest integer, 2^31-1', () => {
    // As a size update it is above any sane table maximum, so allow it here.
    const decoder = new HpackDecoder(0x7fffffff);
    decoder.decode(block(int(0x7fffffff, 5, 0x20)));
    expect(() => decoder.decode(block(int(0x80000000, 5, 0x20)))).toThrow(HpackError);
  });

  it('decodes a whole over-large header list, keeps the table in sync and then decodes the next block', () => {
    const decoder = new HpackDecoder(4096, 200);
    const small = ['a', 'b'];
    const big = ['x-big', 'v'.repeat(150)];
    // Exactly at the limit is allowed: 34 + (5 + 129 + 32) = 200.
    const exact = ['x-big', 'v'.repeat(129)];
    expect(decoder.decode(block(indexedLiteral(small[0], small[1]), indexedLiteral(exact[0], exact[1])))).toEqual([
      ...small,
      ...exact,
    ]);
    const over = block(indexedLiteral(small[0], small[1]), indexedLiteral(big[0], big[1]), indexedLiteral('c', 'd'));
    expect(() => decoder.decode(over)).toThrow(HeaderListTooLargeError);
    // The three fields of the failed block went into the table: c (newest), x-big, a, then the first block's.
    expect(decoder.decode(block([0xbe, 0xc0]))).toEqual(['c', 'd', ...small]);
    expect(decoder.decode(block([0xbf]))).toEqual(big);
    expect(decoder.decode(block([0xc1]))).toEqual(exact);
    expect(decoder.tableSize).toBe(34 + 187 + 34 + 166 + 34);
  });
});

describe('encodeHeaderBlock', () => {
  const fields = [
    ':status', '200',
    'content-type', 'application/grpc',
    'grpc-status', '0',
    'grpc-message', 'm'.repeat(300),
    'x-empty', '',
    'x-' + 'n'.repeat(200), 'long name',
    'date', '',
  ];

  it('uses the static table for names and literal names otherwise', () => {
    expect(encodeHeaderBlock([':status', '200'])).toEqual(hex('0803 3230 30'));
    // content-type is static index 31: a full 4-bit prefix, then 31 - 15.
    expect(encodeHeaderBlock(['content-type', 'a'])).toEqual(hex('0f10 0161'));
    expect(encodeHeaderBlock(['grpc-status', '0'])).toEqual(Buffer.from([0x00, 0x0b, ...Buffer.from('grpc-status'), 0x01, 0x30]));
    expect(encodeHeaderBlock([])).toEqual(Buffer.alloc(0));
  });

  it('round-trips through the decoder without a size update, leaving the table empty', () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(encodeHeaderBlock(fields))).toEqual(fields);
    expect(decoder.tableSize).toBe(0);
  });

  it('round-trips with a size update at the start', () => {
    const zero = encodeHeaderBlock(fields, 0);
    expect(zero[0]).toBe(0x20);
    expect(new HpackDecoder().decode(zero)).toEqual(fields);
    const large = encodeHeaderBlock(fields, 4096);
    expect([...large.subarray(0, 3)]).toEqual(int(4096, 5, 0x20));
    expect(new HpackDecoder().decode(large)).toEqual(fields);
  });

  it('writes latin1 bytes above 0x7f as single bytes', () => {
    const latin = ['x-latin', '\u00e9\u00ff\u0080'];
    expect(new HpackDecoder().decode(encodeHeaderBlock(latin))).toEqual(latin);
  });

  it('makes a block of exactly the bytes it writes', () => {
    const encoded = encodeHeaderBlock(fields, 0);
    const expectedLength =
      1 +
      (1 + 4) + // :status
      (2 + 1 + 16) + // content-type
      (1 + 1 + 11 + 1 + 1) + // grpc-status
      (1 + 1 + 12 + 3 + 300) + // grpc-message
      (1 + 1 + 7 + 1) + // x-empty
      (1 + 2 + 202 + 1 + 9) + // the long name
      (2 + 1); // date: static index 33
    expect(encoded.length).toBe(expectedLength);
  });
});
