//! The token scheme's HMAC-SHA256 without the generic MAC machinery: a key's inner and
//! outer pad blocks are compressed once; a value then costs its own blocks plus one outer
//! block, straight through SHA-256's compression function. A batch of values whose message
//! fits one block (up to 55 bytes: most identifiers) goes four at a time through
//! [`lanes`], each token encoded straight into the output buffer. Bit for bit the tokens
//! `Hmac<Sha256>` gives (tested against it below).

mod lanes;

use sha2::{Digest, Sha256};

use lanes::{LANES, Lanes, Words};

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const BLOCK: usize = 64;
/// The longest message that fits one block with its padding (0x80 and a 64-bit length).
const ONE_BLOCK: usize = BLOCK - 9;
/// `tok_` and 43 base64url characters (32 bytes, no padding).
pub(crate) const TOKEN_LEN: usize = 4 + 43;

/// A token key's HMAC states after its inner and outer pad blocks.
#[derive(Clone)]
pub(crate) struct TokenHasher {
    inner: [u32; 8],
    outer: [u32; 8],
    lanes: Lanes,
}

impl TokenHasher {
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut padded = [0u8; BLOCK];
        if key.len() > BLOCK {
            padded[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            padded[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| {
            let mut block = padded;
            block.iter_mut().for_each(|b| *b ^= byte);
            let mut state = IV;
            sha2::block_api::compress256(&mut state, &[block]);
            state
        };
        Self {
            inner: pad(0x36),
            outer: pad(0x5c),
            lanes: Lanes::detect(),
        }
    }

    /// HMAC-SHA256(key, message), as SHA-256's eight state words.
    fn mac_words(&self, message: &[u8]) -> [u32; 8] {
        let mut state = self.inner;
        let (blocks, tail) = message.as_chunks::<BLOCK>();
        if !blocks.is_empty() {
            sha2::block_api::compress256(&mut state, blocks);
        }
        let mut block = [0u8; BLOCK];
        block[..tail.len()].copy_from_slice(tail);
        finish_block(
            &mut state,
            &mut block,
            tail.len(),
            (BLOCK + message.len()) as u64,
        );
        let mut outer = self.outer;
        lanes::compress_one(&mut outer, &outer_block(&state));
        outer
    }

    /// The same hasher on the portable compression (tests compare the two paths).
    #[cfg(test)]
    fn portable(mut self) -> Self {
        self.lanes = Lanes::portable();
        self
    }

    /// HMAC-SHA256(key, message).
    #[cfg(test)]
    pub(crate) fn mac(&self, message: &[u8]) -> [u8; 32] {
        digest_bytes(&self.mac_words(message))
    }

    /// The token of every value, in order, into `out` (`TOKEN_LEN` bytes each; `out` holds
    /// exactly as many tokens as there are values).
    pub(crate) fn tokens<'a>(&self, values: impl Iterator<Item = &'a [u8]>, out: &mut [u8]) {
        let mut slots = [0usize; LANES];
        let mut blocks = [[0u8; BLOCK]; LANES];
        let mut pending = 0;
        for (slot, value) in values.enumerate() {
            let at = slot * TOKEN_LEN;
            let Some(token) = token_at(out, at) else {
                return;
            };
            if value.len() > ONE_BLOCK {
                encode_token(&self.mac_words(value), token);
                continue;
            }
            slots[pending] = at;
            inner_block(value, &mut blocks[pending]);
            pending += 1;
            if pending == LANES {
                self.flush(&slots, &blocks, LANES, out);
                pending = 0;
            }
        }
        if pending > 0 {
            self.flush(&slots, &blocks, pending, out);
        }
    }

    /// The tokens of the first `used` lanes' one-block messages, into their slots of `out`.
    /// The blocks are read as words only here, four values after they were written: read
    /// at once, the bytes just copied in stall the load (store forwarding fails across a
    /// copy's differently sized stores).
    fn flush(
        &self,
        slots: &[usize; LANES],
        inner: &[[u8; BLOCK]; LANES],
        used: usize,
        out: &mut [u8],
    ) {
        let mut states = [self.inner; LANES];
        self.lanes
            .compress(&mut states, &inner.map(|block| words(&block)));
        let outer = states.map(|state| outer_block(&state));
        let mut states = [self.outer; LANES];
        self.lanes.compress(&mut states, &outer);
        for (at, state) in slots.iter().zip(&states).take(used) {
            if let Some(token) = token_at(out, *at) {
                encode_token(state, token);
            }
        }
    }
}

/// The inner hash's one block, into `block`: a message of at most [`ONE_BLOCK`] bytes
/// after the inner pad block, padded.
fn inner_block(message: &[u8], block: &mut [u8; BLOCK]) {
    block[..message.len()].copy_from_slice(message);
    // At most ONE_BLOCK bytes: the length always fits.
    pad(block, message.len(), (BLOCK + message.len()) as u64);
}

/// A block's big-endian message words.
fn words(block: &[u8; BLOCK]) -> Words {
    let mut words = [0u32; 16];
    for (word, bytes) in words.iter_mut().zip(block.as_chunks::<4>().0) {
        *word = u32::from_be_bytes(*bytes);
    }
    words
}

/// The outer hash's one block: the inner digest after the outer pad block, padded.
fn outer_block(inner: &[u32; 8]) -> Words {
    let mut words = [0u32; 16];
    words[..8].copy_from_slice(inner);
    words[8] = 0x8000_0000;
    words[15] = ((BLOCK + 32) * 8) as u32;
    words
}

fn digest_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The two base64url characters of every 12 bits: a 3-byte group is two look-ups.
const PAIRS: [[u8; 2]; 4096] = {
    let mut pairs = [[0u8; 2]; 4096];
    let mut bits = 0;
    while bits < 4096 {
        pairs[bits] = [BASE64URL[bits >> 6], BASE64URL[bits & 63]];
        bits += 1;
    }
    pairs
};

/// `tok_` and the unpadded base64url of a MAC into `out`. Written out for the one length
/// tokens have: the generic encoder took a fifth of a token's time.
fn encode_token(state: &[u32; 8], out: &mut [u8; TOKEN_LEN]) {
    let bytes = digest_bytes(state);
    let (prefix, text) = out.split_at_mut(4);
    prefix.copy_from_slice(crate::kernels::TOKEN_PREFIX.as_bytes());
    let (groups, last) = bytes.as_chunks::<3>();
    let (chars, rest) = text.as_chunks_mut::<4>();
    for (group, chars) in groups.iter().zip(chars) {
        let n =
            (usize::from(group[0]) << 16) | (usize::from(group[1]) << 8) | usize::from(group[2]);
        let [a, b] = PAIRS[(n >> 12) & 0xfff];
        let [c, d] = PAIRS[n & 0xfff];
        *chars = [a, b, c, d];
    }
    // 32 = 10 * 3 + 2: the last two bytes are three characters.
    let n = (usize::from(last[0]) << 16) | (usize::from(last[1]) << 8);
    let [a, b] = PAIRS[(n >> 12) & 0xfff];
    let [c, _] = PAIRS[n & 0xfff];
    if let [x, y, z] = rest {
        [*x, *y, *z] = [a, b, c];
    }
}

/// The token-sized slot of `out` at byte `at`, if `out` holds it.
fn token_at(out: &mut [u8], at: usize) -> Option<&mut [u8; TOKEN_LEN]> {
    out.get_mut(at..at.checked_add(TOKEN_LEN)?)?.try_into().ok()
}

/// `block` holds `used` message bytes: add the padding and length, compress.
fn finish_block(state: &mut [u32; 8], block: &mut [u8; BLOCK], used: usize, total: u64) {
    if pad(block, used, total) {
        sha2::block_api::compress256(state, &[*block]);
    } else {
        let mut last = [0u8; BLOCK];
        last[BLOCK - 8..].copy_from_slice(&(total * 8).to_be_bytes());
        sha2::block_api::compress256(state, &[*block, last]);
    }
}

/// SHA-256's padding after the `used` message bytes of `block`, for a message of `total`
/// bytes: 0x80, zeros, and the length in bits if it fits; false if the length goes into a
/// block of its own.
fn pad(block: &mut [u8; BLOCK], used: usize, total: u64) -> bool {
    block[used] = 0x80;
    block[used + 1..].fill(0);
    let fits = used < BLOCK - 8;
    if fits {
        block[BLOCK - 8..].copy_from_slice(&(total * 8).to_be_bytes());
    }
    fits
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};

    /// Every message length around the block and padding boundaries, and keys shorter than,
    /// equal to and longer than a block: the same MAC as the `hmac` crate's.
    #[test]
    fn the_same_mac_as_the_hmac_crate() {
        for key_len in [0usize, 1, 32, 63, 64, 65, 100, 200] {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + 3) as u8).collect();
            let hasher = TokenHasher::new(&key);
            for len in 0..300 {
                let message: Vec<u8> = (0..len).map(|i| (i * 31 + key_len) as u8).collect();
                let mut reference = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
                reference.update(&message);
                assert_eq!(
                    hasher.mac(&message),
                    <[u8; 32]>::from(reference.finalize().into_bytes()),
                    "key {key_len} bytes, message {len} bytes"
                );
            }
        }
    }

    /// A batch mixing every length from 0 to 300 (so one-block and longer messages
    /// interleave and the last group of lanes is partial), on this CPU's path and the
    /// portable one: each token is `tok_` + the base64 crate's encoding of the `hmac` crate's
    /// MAC, in order.
    #[test]
    fn batch_tokens_are_the_hmac_crates_macs_in_order() {
        use base64::Engine;
        let key = b"a token domain's key";
        let messages: Vec<Vec<u8>> = (0..300)
            .map(|len| (0..len).map(|i| (i * 13 + len) as u8).collect())
            .collect();
        let expected: Vec<String> = messages
            .iter()
            .map(|message| {
                let mut reference = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
                reference.update(message);
                let mac = reference.finalize().into_bytes();
                format!(
                    "tok_{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
                )
            })
            .collect();
        for hasher in [TokenHasher::new(key), TokenHasher::new(key).portable()] {
            for count in [0, 1, 3, 4, 5, 57, 300] {
                let mut out = vec![0u8; count * TOKEN_LEN];
                hasher.tokens(messages[..count].iter().map(Vec::as_slice), &mut out);
                let got: Vec<String> = out
                    .chunks_exact(TOKEN_LEN)
                    .map(|t| String::from_utf8(t.to_vec()).unwrap())
                    .collect();
                assert_eq!(got, expected[..count], "{count} values, {:?}", hasher.lanes);
            }
        }
    }

    /// RFC 4231 test case 2 (a short key, "what do ya want for nothing?").
    #[test]
    fn rfc_4231_test_case_2() {
        let mac = TokenHasher::new(b"Jefe").mac(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
