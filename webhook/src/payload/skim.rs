//! Finding the end of a JSON object or array without reading what is inside.
//!
//! A real add-to-cart event carries a product with ~100 attributes of which the
//! webhook reads two. Reading the rest token by token costs more than everything
//! else the webhook does per call, so the rest is *skimmed*: 64 bytes at a time, SIMD
//! compares find the quotes, backslashes and brackets, bit arithmetic (the technique
//! of simdjson's first stage) removes the escaped quotes and everything inside
//! strings, and counting brackets finds where the container closes.
//!
//! What is skimmed is checked for structure only: its strings must end and its
//! brackets balance, but its numbers, literals, escapes, commas and colons are not
//! checked, nor whether a `{` is closed by a `}` rather than a `]`. The reader skims
//! containers it passes over (values of unknown keys, containers where the model
//! wants a scalar) and the rest of an object once the model has read its fields;
//! it never skims a value it uses.

/// Bit `i` is set when byte `i` of a 64-byte block is the character in question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Masks {
    quote: u64,
    backslash: u64,
    /// `{` or `[`.
    open: u64,
    /// `}` or `]`.
    close: u64,
}

/// The position of the bracket that closes the container `from` is inside of, or
/// `None` if the input ends first. `from` must be outside any string, and not right
/// after a backslash.
pub fn container_end(bytes: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("pclmulqdq")
        && is_x86_feature_detected!("popcnt")
    {
        // SAFETY: the processor has all three features, just checked.
        return unsafe { container_end_avx512(bytes, from) };
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt") {
        // SAFETY: the processor has both features, just checked.
        return unsafe { container_end_avx2(bytes, from) };
    }
    scan(bytes, from, classify, prefix_xor)
}

/// The same, compiled for processors with AVX2 and a popcount instruction (x86_64
/// from 2013 on). The images target the x86_64 baseline, which has neither: without
/// them a block costs about twice as much.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn container_end_avx2(bytes: &[u8], from: usize) -> Option<usize> {
    scan(bytes, from, |block| classify_avx2(block), prefix_xor)
}

/// The same for processors with AVX-512BW (recent servers, where the webhook
/// mostly runs): one compare per character for the whole block, and the string
/// mask in one carry-less multiplication. On AMD Zen, a third less per block than
/// AVX2 (older Intel server cores may lower their clock for 512-bit work).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw,pclmulqdq,popcnt")]
fn container_end_avx512(bytes: &[u8], from: usize) -> Option<usize> {
    scan(
        bytes,
        from,
        |block| classify_avx512(block),
        |quotes| prefix_xor_clmul(quotes),
    )
}

/// Counts brackets outside strings, a block at a time, until the one at depth 0.
#[inline(always)]
fn scan(
    bytes: &[u8],
    from: usize,
    classify: impl Fn(&[u8; 64]) -> Masks,
    prefix_xor: impl Fn(u64) -> u64,
) -> Option<usize> {
    let mut depth: u32 = 1;
    let mut escape_carry = 0;
    let mut in_string = 0;
    let mut base = from;
    while base < bytes.len() {
        let masks = match bytes.get(base..base + 64) {
            Some(full) => classify(full.try_into().ok()?),
            None => classify(&padded(&bytes[base..])),
        };
        let escaped = escaped(masks.backslash, &mut escape_carry);
        let quotes = masks.quote & !escaped;
        // Set from each opening quote up to (not including) its closing quote.
        let strings = prefix_xor(quotes) ^ in_string;
        in_string = ((strings as i64) >> 63) as u64;
        let mut open = masks.open & !strings & !escaped;
        let mut close = masks.close & !strings & !escaped;
        while close != 0 {
            let first = close & close.wrapping_neg();
            let before = first - 1;
            depth += (open & before).count_ones();
            open &= !before;
            depth -= 1;
            if depth == 0 {
                return Some(base + first.trailing_zeros() as usize);
            }
            close ^= first;
        }
        depth += open.count_ones();
        base += 64;
    }
    None
}

/// The last, partial block, padded with spaces (which are nothing structural).
fn padded(tail: &[u8]) -> [u8; 64] {
    let mut block = [b' '; 64];
    block[..tail.len()].copy_from_slice(tail);
    block
}

/// The characters escaped by a backslash (simdjson's branchless odd-sequence
/// search): a run of backslashes escapes the character after it when the run is
/// odd. `carry` says whether the previous block ended with an escaping backslash.
fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    const EVEN_BITS: u64 = 0x5555_5555_5555_5555;
    let backslash = backslash & !*carry;
    let follows_escape = (backslash << 1) | *carry;
    let odd_sequence_starts = backslash & !EVEN_BITS & !follows_escape;
    let (sequences_starting_on_even_bits, overflow) =
        odd_sequence_starts.overflowing_add(backslash);
    *carry = u64::from(overflow);
    let invert_mask = sequences_starting_on_even_bits << 1;
    (EVEN_BITS ^ invert_mask) & follows_escape
}

/// Bit `i` of the result is the XOR of bits `0..=i` of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// [`prefix_xor`] as a carry-less multiplication by all ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq")]
fn prefix_xor_clmul(x: u64) -> u64 {
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set_epi64x, _mm_set1_epi8,
    };
    let product = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1), 0);
    _mm_cvtsi128_si64(product) as u64
}

#[cfg(target_arch = "x86_64")]
fn classify(block: &[u8; 64]) -> Masks {
    // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 processor has it.
    unsafe { classify_sse2(block) }
}

/// Four 16-byte compares per character.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn classify_sse2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let lanes: [__m128i; 4] = std::array::from_fn(|lane| {
        // SAFETY: `lane * 16 + 16 <= 64`, and an unaligned load has no other
        // requirement.
        unsafe { _mm_loadu_si128(block.as_ptr().add(lane * 16).cast()) }
    });
    let mask = |lanes: &[__m128i; 4], byte: u8| {
        let target = _mm_set1_epi8(byte as i8);
        lanes.iter().enumerate().fold(0u64, |bits, (lane, &v)| {
            let found = _mm_movemask_epi8(_mm_cmpeq_epi8(v, target)) as u16;
            bits | (u64::from(found) << (lane * 16))
        })
    };
    // `[` and `{` differ only in bit 0x20, as do `]` and `}`.
    let case = _mm_set1_epi8(0x20);
    let folded = lanes.map(|v| _mm_or_si128(v, case));
    Masks {
        quote: mask(&lanes, b'"'),
        backslash: mask(&lanes, b'\\'),
        open: mask(&folded, b'{'),
        close: mask(&folded, b'}'),
    }
}

/// Two 32-byte compares per character.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn classify_avx2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };
    // SAFETY: both 32-byte loads are within the block; unaligned loads are allowed.
    let halves: [__m256i; 2] = unsafe {
        [
            _mm256_loadu_si256(block.as_ptr().cast()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast()),
        ]
    };
    let mask = |halves: &[__m256i; 2], byte: u8| {
        let target = _mm256_set1_epi8(byte as i8);
        let low = _mm256_movemask_epi8(_mm256_cmpeq_epi8(halves[0], target)) as u32;
        let high = _mm256_movemask_epi8(_mm256_cmpeq_epi8(halves[1], target)) as u32;
        u64::from(low) | (u64::from(high) << 32)
    };
    let case = _mm256_set1_epi8(0x20);
    let folded = halves.map(|v| _mm256_or_si256(v, case));
    Masks {
        quote: mask(&halves, b'"'),
        backslash: mask(&halves, b'\\'),
        open: mask(&folded, b'{'),
        close: mask(&folded, b'}'),
    }
}

/// One 64-byte compare per character.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
fn classify_avx512(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        _mm512_cmpeq_epi8_mask, _mm512_loadu_si512, _mm512_or_si512, _mm512_set1_epi8,
    };
    // SAFETY: the 64 bytes loaded are the block's; unaligned loads are allowed.
    let bytes = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
    let folded = _mm512_or_si512(bytes, _mm512_set1_epi8(0x20));
    let is = |v, byte: u8| _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(byte as i8));
    Masks {
        quote: is(bytes, b'"'),
        backslash: is(bytes, b'\\'),
        open: is(folded, b'{'),
        close: is(folded, b'}'),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(block: &[u8; 64]) -> Masks {
    scalar_classify(block)
}

/// One byte at a time: the portable definition the SIMD version is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn scalar_classify(block: &[u8; 64]) -> Masks {
    let mut masks = Masks {
        quote: 0,
        backslash: 0,
        open: 0,
        close: 0,
    };
    for (i, &byte) in block.iter().enumerate() {
        let bit = 1u64 << i;
        match byte {
            b'"' => masks.quote |= bit,
            b'\\' => masks.backslash |= bit,
            b'{' | b'[' => masks.open |= bit,
            b'}' | b']' => masks.close |= bit,
            _ => {}
        }
    }
    masks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Byte by byte, the obvious way. (A backslash escapes the next byte wherever it
    /// is: outside strings, where JSON has none, that is what the bit version does.)
    fn reference_end(bytes: &[u8], from: usize) -> Option<usize> {
        let (mut depth, mut in_string, mut escaped) = (1u32, false, false);
        for (i, &byte) in bytes.iter().enumerate().skip(from) {
            if escaped {
                escaped = false;
                continue;
            }
            if byte == b'\\' {
                escaped = true;
                continue;
            }
            if in_string {
                in_string = byte != b'"';
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    }

    #[test]
    fn finds_the_end_past_nested_containers_strings_and_escapes() {
        let json = br#"{"a":[1,{"b":"}]"},"\\",[]],"c\"}":"\\\""}, "after": 1}"#;
        let end = container_end(json, 1).unwrap();
        assert_eq!(
            &json[..=end],
            br#"{"a":[1,{"b":"}]"},"\\",[]],"c\"}":"\\\""}"#
        );
        assert_eq!(container_end(b"[1,2", 1), None);
        assert_eq!(
            container_end(br#"["]"#, 1),
            None,
            "a bracket in an open string"
        );
    }

    #[test]
    fn an_escape_run_across_a_block_boundary_is_carried() {
        for run in 0..5 {
            // Scanned from byte 1, the backslashes end at the first block's last bit.
            let mut json = b"[ \"".to_vec();
            json.resize(65 - run, b'x');
            json.extend(std::iter::repeat_n(b'\\', run));
            json.extend_from_slice(b"\"]\"]");
            assert_eq!(json.len(), 69);
            assert_eq!(
                container_end(&json, 1),
                reference_end(&json, 1),
                "run {run}"
            );
        }
    }

    #[test]
    fn simd_classification_is_the_scalar_definition() {
        let block: [u8; 64] = std::array::from_fn(|i| b"{[}]\"\\a {|]}Z[\x7b\x5b"[i % 16]);
        let all: Vec<u8> = (0..=255).collect();
        for block in all
            .chunks(64)
            .map(|c| <[u8; 64]>::try_from(c).unwrap())
            .chain([block])
        {
            assert_eq!(classify(&block), scalar_classify(&block));
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                // SAFETY: checked just above.
                assert_eq!(unsafe { classify_avx2(&block) }, scalar_classify(&block));
            }
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512bw") {
                // SAFETY: checked just above.
                assert_eq!(unsafe { classify_avx512(&block) }, scalar_classify(&block));
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_carry_less_prefix_xor_is_the_shifted_one() {
        if !is_x86_feature_detected!("pclmulqdq") {
            return;
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // SAFETY: checked at the start.
            assert_eq!(unsafe { prefix_xor_clmul(x) }, prefix_xor(x), "{x:#x}");
        }
        for x in [0, 1, 1 << 63, u64::MAX] {
            // SAFETY: as above.
            assert_eq!(unsafe { prefix_xor_clmul(x) }, prefix_xor(x), "{x:#x}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_the_byte_by_byte_reference(
            text in prop::collection::vec(prop::sample::select(b"{}[]\"\\ax:,".to_vec()), 0..300),
            from in 0usize..8,
        ) {
            let from = from.min(text.len());
            let expected = reference_end(&text, from);
            prop_assert_eq!(container_end(&text, from), expected);
            // Each variant this processor can run, not only the one chosen.
            prop_assert_eq!(scan(&text, from, classify, prefix_xor), expected);
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt") {
                // SAFETY: checked just above.
                prop_assert_eq!(unsafe { container_end_avx2(&text, from) }, expected);
            }
        }
    }
}
