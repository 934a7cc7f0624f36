//! A streaming detokenizer: feeds token pieces in and hands text out only in whole UTF-8
//! characters, holding back the start of a character split across tokens (byte-fallback and
//! byte-level tokens split multi-byte characters). A caller printing each output never prints
//! a broken character. Bytes that cannot start or continue a character pass through as they
//! are, so nothing is ever lost.

/// Holds back at most 3 bytes: the start of an incomplete UTF-8 character.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

/// Length of the UTF-8 character a byte starts, or None for a byte that cannot start one.
fn lead_len(b: u8) -> Option<usize> {
    match b {
        0x00..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `piece` and appends to `out` everything that is complete.
    pub fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(piece);
        // Find the start of a trailing incomplete character, if any.
        let p = &self.pending;
        let mut keep_from = p.len();
        for back in 1..=p.len().min(3) {
            let i = p.len() - back;
            if let Some(n) = lead_len(p[i]) {
                let complete = n <= back;
                let continuations = p[i + 1..].iter().all(|&b| (0x80..=0xbf).contains(&b));
                if !complete && continuations {
                    keep_from = i;
                }
                break;
            }
        }
        out.extend_from_slice(&self.pending[..keep_from]);
        self.pending.drain(..keep_from);
    }

    /// Appends whatever is still held back (at the end of generation).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }

    /// Bytes held back now.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_come_out_whole() {
        let text = "a€b😀c".as_bytes();
        // Feed one byte at a time: every output chunk is valid UTF-8, and together they are
        // the input.
        let mut d = StreamDecoder::new();
        let mut all = Vec::new();
        for &b in text {
            let mut out = Vec::new();
            d.push(&[b], &mut out);
            assert!(std::str::from_utf8(&out).is_ok(), "{out:?}");
            all.extend(out);
        }
        d.finish(&mut all);
        assert_eq!(all, text);
    }

    #[test]
    fn invalid_bytes_pass_through_and_truncated_tails_flush() {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        d.push(&[0xff, b'x', 0x80], &mut out);
        assert_eq!(out, [0xff, b'x', 0x80]);
        d.push(&[0xe2, 0x82], &mut out);
        assert_eq!(d.pending(), [0xe2, 0x82]);
        d.finish(&mut out);
        assert_eq!(out, [0xff, b'x', 0x80, 0xe2, 0x82]);
    }
}
