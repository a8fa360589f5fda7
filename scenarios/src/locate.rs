//! Finds where a field sits in a JSON text, by its path (`faults.plan[2].fault.node`).
//!
//! serde reports line and column for syntax and type errors, but checks made after parsing
//! (a node name that does not exist, a range) only know the field's path. This scanner walks
//! the text once and returns the line and column where the value at that path starts. It is
//! written here because no maintained crate maps serde_json paths back to positions; it only
//! needs to handle text that serde_json already accepted.

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(index) = rest[1..close].parse() {
                steps.push(Step::Index(index));
            }
            rest = &rest[close + 1..];
        }
    }
    steps
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn skip_space(&mut self) {
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn string(&mut self) -> String {
        let start = self.at + 1;
        self.at += 1;
        while self.at < self.bytes.len() && self.bytes[self.at] != b'"' {
            self.at += if self.bytes[self.at] == b'\\' { 2 } else { 1 };
        }
        self.at += 1;
        String::from_utf8_lossy(&self.bytes[start..(self.at - 1).min(self.bytes.len())])
            .into_owned()
    }

    /// Skips one value, or finds `target` inside it; returns the offset when found.
    fn value(&mut self, target: &[Step]) -> Option<usize> {
        self.skip_space();
        if target.is_empty() {
            return Some(self.at);
        }
        match self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                loop {
                    self.skip_space();
                    match self.bytes.get(self.at)? {
                        b'}' => {
                            self.at += 1;
                            return None;
                        }
                        b',' => self.at += 1,
                        b'"' => {
                            let key = self.string();
                            self.skip_space();
                            self.at += 1; // the colon
                            let wanted = matches!(&target[0], Step::Key(k) if *k == key);
                            let found = self.value(if wanted {
                                &target[1..]
                            } else {
                                &[Step::Index(usize::MAX)]
                            });
                            if wanted {
                                return found;
                            }
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let mut index = 0;
                loop {
                    self.skip_space();
                    match self.bytes.get(self.at)? {
                        b']' => {
                            self.at += 1;
                            return None;
                        }
                        b',' => {
                            self.at += 1;
                            index += 1;
                        }
                        _ => {
                            let wanted = matches!(&target[0], Step::Index(i) if *i == index);
                            let found = self.value(if wanted {
                                &target[1..]
                            } else {
                                &[Step::Index(usize::MAX)]
                            });
                            if wanted {
                                return found;
                            }
                        }
                    }
                }
            }
            b'"' => {
                self.string();
                None
            }
            _ => {
                while self.at < self.bytes.len()
                    && !matches!(self.bytes[self.at], b',' | b'}' | b']')
                    && !self.bytes[self.at].is_ascii_whitespace()
                {
                    self.at += 1;
                }
                None
            }
        }
    }
}

/// The 1-based line and column where the value at `path` starts, if the text has it.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let steps = parse_path(path);
    let offset = Scanner { bytes: text.as_bytes(), at: 0 }.value(&steps)?;
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_indexes() {
        let text = "{\n  \"a\": {\"b\": [1, {\"c\": \"x\\\"y\"}, 3]},\n  \"d\": true\n}";
        assert_eq!(locate(text, "a.b[1].c"), Some((2, 24)));
        assert_eq!(locate(text, "a.b[2]"), Some((2, 33)));
        assert_eq!(locate(text, "d"), Some((3, 8)));
        assert_eq!(locate(text, ""), Some((1, 1)));
        assert_eq!(locate(text, "a.zz"), None);
        assert_eq!(locate(text, "a.b[7]"), None);
    }
}
