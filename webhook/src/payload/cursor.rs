//! Reading JSON one value at a time, in place, keeping only what the caller asks for.
//!
//! serde_json reads every key and value it passes, even to ignore them, and that
//! was most of the cost of a call with a real add-to-cart event (~100 product
//! attributes, of which two are read). This reader is driven by the document model
//! (`document.rs`): it reads in full, and strictly, the values the model asks for,
//! skips the others (strings and numbers still checked), and once an object has
//! given the model every field it knows, skims the rest of it (`skim.rs`).
//!
//! Errors carry only a position: `parse_check_stock` asks serde_json to describe
//! malformed input, so messages stay serde_json's, with line and column.

use std::borrow::Cow;

use super::skim;

/// Where and why the input could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not JSON, at this byte offset.
    Syntax(usize),
    /// A key of the model given twice in one object (PHP arrays cannot repeat a key,
    /// so such a payload is not from Commerce).
    Duplicate { field: &'static str, at: usize },
}

/// What the model did with an object member handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    /// Not a field of the model: the reader skips its value.
    Unknown,
    /// Its value was read.
    Read,
    /// Its value was read, and it was the model's last field: the rest of the object
    /// is skimmed.
    Last,
}

/// A position in a JSON text.
pub struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Cursor { text, at: 0 }
    }

    pub fn syntax_error(&self) -> Error {
        Error::Syntax(self.at)
    }

    /// The next byte that is not whitespace, the cursor left on it.
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.text.get(self.at) {
            if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    /// Only whitespace is left.
    pub fn finish(mut self) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.syntax_error()),
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Result<(), Error> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    /// Consumes a `null` if that is what comes next.
    pub fn null(&mut self) -> Result<bool, Error> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    /// Reads the object at the cursor, handing `member` each key with the cursor at
    /// its value. The key is as written between the quotes, escapes resolved.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &[u8]) -> Result<Member, Error>,
    ) -> Result<(), Error> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.syntax_error());
            }
            let key = self.string_bytes()?;
            self.expect(b':')?;
            if self.peek().is_none() {
                return Err(self.syntax_error());
            }
            match member(self, &key)? {
                Member::Unknown => self.skip()?,
                Member::Read => {}
                // Only the separator after it is checked: the rest is skimmed.
                Member::Last => {
                    if !self.eat(b'}') {
                        self.expect(b',')?;
                        self.skim_rest(b'}')?;
                    }
                    return Ok(());
                }
            }
            if self.eat(b'}') {
                return Ok(());
            }
            self.expect(b',')?;
        }
    }

    /// Reads the array at the cursor, calling `element` with the cursor at each one.
    pub fn array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.expect(b'[')?;
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            if self.peek().is_none() {
                return Err(self.syntax_error());
            }
            element(self)?;
            if self.eat(b']') {
                return Ok(());
            }
            self.expect(b',')?;
        }
    }

    /// Passes over the value at the cursor: scalars are checked, containers skimmed.
    pub fn skip(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'"') => self.string_end().map(|_| ()),
            Some(b'{' | b'[') => self.skip_container().map(|_| ()),
            _ => self.scalar().map(|_| ()),
        }
    }

    /// Moves past the bracket closing the container the cursor is in (`close`, when
    /// it comes next: the model's last field is often the object's last).
    fn skim_rest(&mut self, close: u8) -> Result<(), Error> {
        if self.eat(close) {
            return Ok(());
        }
        match skim::container_end(self.text, self.at) {
            Some(end) => {
                self.at = end + 1;
                Ok(())
            }
            None => Err(Error::Syntax(self.text.len())),
        }
    }

    /// Passes over the object or array at the cursor (which must be at its `[` or
    /// `{`); says whether it was empty.
    pub fn skip_container(&mut self) -> Result<bool, Error> {
        debug_assert!(matches!(self.text.get(self.at), Some(b'[' | b'{')));
        let close = if self.text[self.at] == b'[' {
            b']'
        } else {
            b'}'
        };
        self.at += 1;
        if self.eat(close) {
            return Ok(true);
        }
        self.skim_rest(close).map(|()| false)
    }

    /// The string at the cursor (which must be at its opening quote).
    pub fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        let start = self.at;
        let escaped = self.string_end()?;
        let quoted = &self.text[start..self.at];
        if escaped {
            serde_json::from_slice::<String>(quoted)
                .map(Cow::Owned)
                .map_err(|_| Error::Syntax(start))
        } else {
            std::str::from_utf8(&quoted[1..quoted.len() - 1])
                .map(Cow::Borrowed)
                .map_err(|_| Error::Syntax(start))
        }
    }

    /// A key: compared byte for byte, so left undecoded unless it has escapes. One
    /// whose escapes do not decode (a lone surrogate) is kept as written: no field
    /// of the model has a backslash, so it is an unknown key, passed over.
    fn string_bytes(&mut self) -> Result<Cow<'a, [u8]>, Error> {
        let start = self.at;
        let escaped = self.string_end()?;
        let raw = &self.text[start + 1..self.at - 1];
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        let end = self.at;
        self.at = start;
        let key = self.string().map_or(Cow::Borrowed(raw), |key| {
            Cow::Owned(key.into_owned().into_bytes())
        });
        self.at = end;
        Ok(key)
    }

    /// Moves past the string at the cursor (which is at its opening quote); says
    /// whether it has escapes. Control characters and unknown escapes are errors.
    fn string_end(&mut self) -> Result<bool, Error> {
        debug_assert_eq!(self.text.get(self.at), Some(&b'"'));
        let text = self.text;
        let mut at = self.at + 1;
        let mut escaped = false;
        loop {
            at = next_special(text, at);
            match text.get(at) {
                Some(b'"') => {
                    self.at = at + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    at += match text.get(at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
                        Some(b'u')
                            if text
                                .get(at + 2..at + 6)
                                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
                        {
                            6
                        }
                        _ => return Err(Error::Syntax(at)),
                    };
                }
                _ => return Err(Error::Syntax(at)),
            }
        }
    }

    /// The number, `true`, `false` or `null` at the cursor, as written.
    pub fn scalar(&mut self) -> Result<&'a str, Error> {
        let start = self.at;
        match self.text.get(start) {
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            _ => self.number()?,
        }
        // Only ASCII was accepted above.
        std::str::from_utf8(&self.text[start..self.at]).map_err(|_| Error::Syntax(start))
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), Error> {
        let text = self.text;
        let mut at = self.at;
        let digits = |at: usize| {
            text[at.min(text.len())..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        if text.get(at) == Some(&b'-') {
            at += 1;
        }
        match text.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => at += digits(at),
            _ => return Err(Error::Syntax(at)),
        }
        if text.get(at) == Some(&b'.') {
            let fraction = digits(at + 1);
            if fraction == 0 {
                return Err(Error::Syntax(at + 1));
            }
            at += 1 + fraction;
        }
        if matches!(text.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(text.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let exponent = digits(at);
            if exponent == 0 {
                return Err(Error::Syntax(at));
            }
            at += exponent;
        }
        self.at = at;
        Ok(())
    }

    /// The error for a key of the model given twice, at the cursor.
    pub fn duplicate(&self, field: &'static str) -> Error {
        Error::Duplicate { field, at: self.at }
    }
}

/// The first position from `at` holding a quote, a backslash or a control
/// character, or the end of `text`. Sixteen bytes at a time where SSE2 is (every
/// x86_64): most of a payload is the inside of strings.
fn next_special(text: &[u8], mut at: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = text.get(at..at + 16) {
        let Ok(chunk) = chunk.try_into() else { break };
        // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 processor has it.
        let found = unsafe { special_bytes_sse2(chunk) };
        if found != 0 {
            return at + found.trailing_zeros() as usize;
        }
        at += 16;
    }
    while let Some(&byte) = text.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

/// Bit `i` is set when byte `i` of the 16 is a quote, a backslash or a control
/// character.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn special_bytes_sse2(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: the 16 bytes loaded are the chunk's; an unaligned load has no other
    // requirement.
    let bytes = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
    let is = |byte: u8| _mm_cmpeq_epi8(bytes, _mm_set1_epi8(byte as i8));
    // Unsigned `byte < 0x20` is `max(byte, 0x1f) == 0x1f`.
    let control = _mm_cmpeq_epi8(
        _mm_max_epu8(bytes, _mm_set1_epi8(0x1f)),
        _mm_set1_epi8(0x1f),
    );
    let special = _mm_or_si128(_mm_or_si128(is(b'"'), is(b'\\')), control);
    _mm_movemask_epi8(special) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_quotes_backslashes_and_control_characters_in_any_lane() {
        for at in 0..40 {
            for special in [b'"', b'\\', b'\n', 0x1f, 0] {
                // Bytes of UTF-8 text and DEL around it, in the SIMD lanes too.
                let mut text: Vec<u8> = "é€\u{7f}x".bytes().cycle().take(40).collect();
                text[at] = special;
                assert_eq!(next_special(&text, 0), at);
            }
        }
        let text = "é€ a\u{7f}\"".as_bytes();
        assert_eq!(
            next_special(text, 0),
            text.len() - 1,
            "non-ASCII is not special"
        );
        assert_eq!(next_special(b"abc", 0), 3);
    }

    #[test]
    fn numbers_follow_the_json_grammar() {
        for good in ["0", "-0", "12", "1.5", "-0.25e+3", "7E9", "1e-2"] {
            let mut cursor = Cursor::new(good.as_bytes());
            assert_eq!(cursor.scalar(), Ok(good), "{good}");
        }
        for bad in ["01", "-", "1.", ".5", "1e", "+1", "1e+", "x"] {
            let mut cursor = Cursor::new(bad.as_bytes());
            let read = cursor.scalar().and_then(|_| cursor.finish());
            assert!(read.is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped_and_bad_escapes_refused() {
        let mut cursor = Cursor::new(br#""plain""#);
        assert!(matches!(cursor.string(), Ok(Cow::Borrowed("plain"))));
        let mut cursor = Cursor::new(br#""a\"b\u00e9""#);
        assert_eq!(cursor.string().unwrap(), "a\"bé");
        for bad in [&br#""a\x""#[..], br#""\u12""#, b"\"a\nb\"", b"\"open"] {
            assert!(
                Cursor::new(bad).skip().is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn unknown_members_are_skipped_and_the_rest_skimmed_after_the_last_field() {
        let text = br#"{"a":[1,{"x":"}"}],"b":"B","c":true,"d":{"e":1}} "#;
        let mut read = Vec::new();
        let mut cursor = Cursor::new(text);
        cursor
            .object(|cursor, key| match key {
                b"b" => {
                    read.push(cursor.string()?.into_owned());
                    Ok(Member::Read)
                }
                b"c" => {
                    read.push(cursor.scalar()?.to_owned());
                    Ok(Member::Last)
                }
                _ => Ok(Member::Unknown),
            })
            .unwrap();
        assert_eq!(read, ["B", "true"]);
        assert_eq!(cursor.finish(), Ok(()));
    }
}
