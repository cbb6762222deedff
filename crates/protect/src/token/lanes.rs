//! Four SHA-256 compressions at once.
//!
//! One compression with SHA-NI is latency-bound: each two-round instruction waits for the one
//! before it. Four independent messages' rounds issued together keep the unit busy, measured
//! at 22.6 ns per block against 44.6 for one (idle machine, 2026-12-01). Tokens are short
//! values, each one inner and one outer block, so a batch of them is four lanes at a time.
//!
//! This module holds the workspace's only `unsafe`: calling the function compiled for the
//! SHA extensions, once [`Lanes::detect`] has seen the CPU has them. The intrinsics inside
//! are safe functions there; elsewhere every lane falls back to `sha2`'s compression.

/// Messages compressed together.
pub(crate) const LANES: usize = 4;

/// A block as SHA-256's sixteen big-endian message words.
pub(crate) type Words = [u32; 16];

/// How this CPU compresses four blocks: with SHA-NI, or one `sha2` call per lane.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lanes {
    sha_ni: bool,
}

impl Lanes {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let sha_ni = std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1");
        #[cfg(not(target_arch = "x86_64"))]
        let sha_ni = false;
        Self { sha_ni }
    }

    /// The portable path whatever the CPU has (for tests that compare the two).
    #[cfg(test)]
    pub(crate) fn portable() -> Self {
        Self { sha_ni: false }
    }

    /// Compress `blocks[i]` into `states[i]`, for each lane.
    pub(crate) fn compress(&self, states: &mut [[u32; 8]; LANES], blocks: &[Words; LANES]) {
        #[cfg(target_arch = "x86_64")]
        if self.sha_ni {
            // SAFETY: `sha_ni` is true only when `detect` saw every feature `sha_ni::compress`
            // is compiled for on this CPU; the function has no other precondition.
            #[allow(unsafe_code)]
            unsafe {
                sha_ni::compress(states, blocks)
            };
            return;
        }
        for (state, words) in states.iter_mut().zip(blocks) {
            compress_one(state, words);
        }
    }
}

/// One block of words through `sha2`'s compression (which takes bytes).
pub(crate) fn compress_one(state: &mut [u32; 8], words: &Words) {
    let mut block = [0u8; 64];
    for (bytes, word) in block.chunks_exact_mut(4).zip(words) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    sha2::block_api::compress256(state, &[block]);
}

#[cfg(target_arch = "x86_64")]
mod sha_ni {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_extract_epi32, _mm_set_epi32,
        _mm_setzero_si128, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32,
        _mm_shuffle_epi32,
    };

    use super::{LANES, Words};

    /// SHA-256's round constants (FIPS 180-4, 4.2.2).
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// Four words as one vector, the first in the lowest lane.
    #[target_feature(enable = "sse2")]
    fn vector(w: &[u32]) -> __m128i {
        _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32)
    }

    /// The rounds of four blocks, interleaved lane by lane. SHA-NI keeps the state as two
    /// vectors, (A, B, E, F) and (C, D, G, H) from the highest lane down; each
    /// `sha256rnds2` runs two rounds and returns the new (A, B, E, F), while the old one
    /// becomes (C, D, G, H).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) fn compress(states: &mut [[u32; 8]; LANES], blocks: &[Words; LANES]) {
        let zero = _mm_setzero_si128();
        let mut abef = [zero; LANES];
        let mut cdgh = [zero; LANES];
        // Per lane, the last sixteen message words, four to a vector (W[t-16..t]).
        let mut w = [[zero; 4]; LANES];
        for lane in 0..LANES {
            let [a, b, c, d, e, f, g, h] = states[lane];
            abef[lane] = _mm_set_epi32(a as i32, b as i32, e as i32, f as i32);
            cdgh[lane] = _mm_set_epi32(c as i32, d as i32, g as i32, h as i32);
            for (i, quad) in blocks[lane].chunks_exact(4).enumerate() {
                w[lane][i] = vector(quad);
            }
        }
        let (abef_in, cdgh_in) = (abef, cdgh);
        for group in 0..16 {
            let k = vector(&K[4 * group..4 * group + 4]);
            let slot = group % 4;
            for lane in 0..LANES {
                if group >= 4 {
                    // W[t..t+4] from W[t-16..t]: the slot being replaced holds W[t-16..t-12].
                    let [w0, w1, w2, w3] = [0, 1, 2, 3].map(|i| w[lane][(slot + i) % 4]);
                    let partial =
                        _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8::<4>(w3, w2));
                    w[lane][slot] = _mm_sha256msg2_epu32(partial, w3);
                }
                let wk = _mm_add_epi32(w[lane][slot], k);
                cdgh[lane] = _mm_sha256rnds2_epu32(cdgh[lane], abef[lane], wk);
                abef[lane] =
                    _mm_sha256rnds2_epu32(abef[lane], cdgh[lane], _mm_shuffle_epi32::<0x0E>(wk));
            }
        }
        for lane in 0..LANES {
            let abef = _mm_add_epi32(abef[lane], abef_in[lane]);
            let cdgh = _mm_add_epi32(cdgh[lane], cdgh_in[lane]);
            states[lane] = [
                _mm_extract_epi32::<3>(abef) as u32,
                _mm_extract_epi32::<2>(abef) as u32,
                _mm_extract_epi32::<3>(cdgh) as u32,
                _mm_extract_epi32::<2>(cdgh) as u32,
                _mm_extract_epi32::<1>(abef) as u32,
                _mm_extract_epi32::<0>(abef) as u32,
                _mm_extract_epi32::<1>(cdgh) as u32,
                _mm_extract_epi32::<0>(cdgh) as u32,
            ];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random-looking blocks and states: every lane equals `sha2`'s compression of it, on
    /// whichever path this CPU takes and on the portable one.
    #[test]
    fn each_lane_is_sha2s_compression() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u32
        };
        for _ in 0..200 {
            let mut states = [[0u32; 8]; LANES];
            let mut blocks = [[0u32; 16]; LANES];
            states.iter_mut().flatten().for_each(|v| *v = next());
            blocks.iter_mut().flatten().for_each(|v| *v = next());
            let mut expected = states;
            for (state, words) in expected.iter_mut().zip(&blocks) {
                let mut block = [0u8; 64];
                for (bytes, word) in block.chunks_exact_mut(4).zip(words) {
                    bytes.copy_from_slice(&word.to_be_bytes());
                }
                sha2::block_api::compress256(state, &[block]);
            }
            for lanes in [Lanes::detect(), Lanes::portable()] {
                let mut got = states;
                lanes.compress(&mut got, &blocks);
                assert_eq!(got, expected, "{lanes:?}");
            }
        }
    }
}
