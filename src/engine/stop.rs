//! Stop strings: text is held back while it could still be the start of a stop string, so a
//! caller never sees part of one. Input arrives in whole UTF-8 characters (from the streaming
//! decoder); a stop string is valid UTF-8, so the held-back part always starts on a character
//! boundary and what is released is valid UTF-8 too.

/// What `StopMatcher::push` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// No stop string yet: the text that is safe to release (possibly empty).
    Release(Vec<u8>),
    /// A stop string matched: the text before it; everything from the match on is dropped.
    Stopped(Vec<u8>),
}

#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<Vec<u8>>,
    held: Vec<u8>,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match before any text).
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            held: Vec::new(),
        }
    }

    /// Adds `text`; returns what may be shown now.
    pub fn push(&mut self, text: &[u8]) -> Scan {
        self.held.extend_from_slice(text);
        // The earliest match wins: it is what a reader of the whole text would cut at.
        let first = self
            .stops
            .iter()
            .filter_map(|s| memchr::memmem::find(&self.held, s))
            .min();
        if let Some(at) = first {
            self.held.truncate(at);
            return Scan::Stopped(std::mem::take(&mut self.held));
        }
        let keep = self.partial_suffix();
        let release = self.held.len() - keep;
        Scan::Release(self.held.drain(..release).collect())
    }

    /// The text still held back (at the end of generation it is released: no stop matched).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of the held text that is a proper prefix of a stop string.
    fn partial_suffix(&self) -> usize {
        let h = &self.held;
        self.stops
            .iter()
            .map(|s| {
                (1..s.len().min(h.len() + 1))
                    .rev()
                    .find(|&n| h.ends_with(&s[..n]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = Vec::new();
        for p in pieces {
            match m.push(p.as_bytes()) {
                Scan::Release(t) => out.extend(t),
                Scan::Stopped(t) => {
                    out.extend(t);
                    return (String::from_utf8(out).unwrap(), true);
                }
            }
        }
        out.extend(m.finish());
        (String::from_utf8(out).unwrap(), false)
    }

    #[test]
    fn a_stop_split_across_pieces_is_never_shown() {
        let stops = ["\nUser:"];
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push(b"Hello"), Scan::Release(b"Hello".to_vec()));
        assert_eq!(m.push(b"\nUs"), Scan::Release(Vec::new()));
        assert_eq!(m.push(b"er: more"), Scan::Stopped(Vec::new()));
    }

    #[test]
    fn a_false_start_is_released_once_it_cannot_match() {
        assert_eq!(run(&["abc"], &["xa", "b", "d"]), ("xabd".into(), false));
        assert_eq!(run(&["abc"], &["xa", "b"]), ("xab".into(), false));
        assert_eq!(run(&["abc"], &["xaab", "cz"]), ("xa".into(), true));
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        assert_eq!(
            run(&["world", "lo w"], &["hello world"]),
            ("hel".into(), true)
        );
        assert_eq!(run(&["", "b"], &["ab"]), ("a".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        // "é" is two bytes; the stop starts with it, so the hold begins on its first byte.
        let (text, stopped) = run(&["éx"], &["caf", "é", "!"]);
        assert_eq!((text.as_str(), stopped), ("café!", false));
        assert_eq!(run(&["éx"], &["café", "x"]), ("caf".into(), true));
    }
}
