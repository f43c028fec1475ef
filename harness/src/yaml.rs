//! YAML in, typed values out: the only module that touches `serde_yaml` (archived upstream, so it
//! stays behind this one door and can be swapped without touching `matrix` or `claims`).
//!
//! Every error names `file:line:column: message`, the way compilers do, so an editor can jump to
//! it. Checks that serde cannot express (duplicate ids, unknown group members) use
//! [`locate_key_value`] and [`locate_sequence_item`] to point at the offending scalar the same way.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

/// A position in a YAML text, 1-based like every editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{name}: {source}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// `name:line:column: message`, or `name: message` when the parser knows no position.
    #[error("{name}{}: {message}", location.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        name: String,
        location: Option<Location>,
        message: String,
    },
}

impl YamlError {
    /// An error found after parsing (by a validator), located in the text when possible.
    pub fn invalid(
        name: &str,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> YamlError {
        YamlError::Invalid {
            name: name.to_owned(),
            location,
            message: message.into(),
        }
    }
}

/// Reads `path` for [`from_str_named`]: its text, and its name as errors will show it.
pub fn read_named(path: &Path) -> Result<(String, String), YamlError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| YamlError::Read {
        name: name.clone(),
        source,
    })?;
    Ok((text, name))
}

/// Parses `text`; `name` (usually the file name) starts every error message.
///
/// Enums are read in serde's externally tagged shape, the same at every depth: a one-key map
/// `{variant: fields}` (`source: { debian: { suite: sid, ... } }`), or a plain string for a unit
/// variant. serde_yaml's own `!variant` tag syntax is not used by our files.
pub fn from_str_named<T: DeserializeOwned>(text: &str, name: &str) -> Result<T, YamlError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_yaml::with::singleton_map_recursive::deserialize(deserializer).map_err(
        |error: serde_yaml::Error| {
            let location = error.location().map(|l| Location {
                line: l.line(),
                column: l.column(),
            });
            YamlError::Invalid {
                name: name.to_owned(),
                location,
                message: message_without_position(&error.to_string()),
            }
        },
    )
}

/// serde_yaml appends ` at line L column C` to its messages; the position is already in front.
fn message_without_position(message: &str) -> String {
    if let Some(at) = message.rfind(" at line ") {
        let tail = &message[at + " at line ".len()..];
        let mut words = tail.split(' ');
        let is_position = matches!(
            (words.next(), words.next(), words.next(), words.next()),
            (Some(l), Some("column"), Some(c), None)
                if l.parse::<usize>().is_ok() && c.trim_end_matches(|ch: char| !ch.is_ascii_digit()).parse::<usize>().is_ok()
        );
        if is_position {
            return message[..at].to_owned();
        }
    }
    message.to_owned()
}

/// Where `key: value` appears (in a block mapping, as the first key of a sequence item
/// `- key: value`, or inside a flow mapping `{ key: value, ... }`), the `occurrence`-th time
/// (0-based); the location is that of the value. Quoted values match their unquoted text. This is
/// a text search, good enough for pointing at ids in hand-written files.
pub fn locate_key_value(text: &str, key: &str, value: &str, occurrence: usize) -> Option<Location> {
    let mut seen = 0;
    for (index, line) in text.lines().enumerate() {
        let content = strip_comment(line);
        let mut from = 0;
        while let Some(found) = content[from..].find(key) {
            let start = from + found;
            from = start + key.len();
            let before = content[..start].trim_end_matches(' ');
            let boundary = before.is_empty() || before.ends_with(['{', ',', '-']);
            let Some(after_colon) = content[start + key.len()..].strip_prefix(':') else {
                continue;
            };
            if !boundary || !(after_colon.is_empty() || after_colon.starts_with(' ')) {
                continue;
            }
            let in_flow = before.ends_with(['{', ',']);
            let scalar = if in_flow {
                after_colon.split([',', '}']).next().unwrap_or("")
            } else {
                after_colon
            };
            if unquote(scalar) == value {
                if seen == occurrence {
                    let lead = after_colon.len() - after_colon.trim_start().len();
                    return Some(Location {
                        line: index + 1,
                        column: start + key.len() + 1 + lead + 1,
                    });
                }
                seen += 1;
            }
        }
    }
    None
}

/// Where `item` appears as an element of the sequence under `parent_key` (either `key: [a, b]`
/// or a block sequence `key:` followed by `- a` lines), the first time.
pub fn locate_sequence_item(text: &str, parent_key: &str, item: &str) -> Option<Location> {
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let content = strip_comment(line);
        let trimmed = content.trim_start();
        let indent = content.len() - trimmed.len();
        let Some(after_key) = trimmed.strip_prefix(parent_key) else {
            continue;
        };
        let Some(after_colon) = after_key.strip_prefix(':') else {
            continue;
        };
        let flow = after_colon.trim_start();
        if let Some(inner) = flow.strip_prefix('[') {
            let base = content.len() - inner.len();
            let mut position = 0;
            for part in inner.trim_end_matches(']').split(',') {
                let lead = part.len() - part.trim_start().len();
                if unquote(part.trim()) == item {
                    return Some(Location {
                        line: index + 1,
                        column: base + position + lead + 1,
                    });
                }
                position += part.len() + 1;
            }
            continue;
        }
        for (next_index, next) in lines.iter().enumerate().skip(index + 1) {
            let next_content = strip_comment(next);
            let next_trimmed = next_content.trim_start();
            if next_trimmed.is_empty() {
                continue;
            }
            let next_indent = next_content.len() - next_trimmed.len();
            let Some(element) = next_trimmed.strip_prefix("- ") else {
                break;
            };
            if next_indent < indent {
                break;
            }
            if unquote(element.trim()) == item {
                let column = next_indent + 2 + (element.len() - element.trim_start().len());
                return Some(Location {
                    line: next_index + 1,
                    column: column + 1,
                });
            }
        }
    }
    None
}

fn strip_comment(line: &str) -> &str {
    // A `#` starts a comment at the line start or after whitespace (YAML's rule), outside quotes;
    // the quotes case does not arise in the files this is used on.
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

fn unquote(scalar: &str) -> &str {
    let s = scalar.trim();
    for quote in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(quote) && s.ends_with(quote) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields exist to be parsed")]
    struct Sample {
        name: String,
        count: u32,
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let error = from_str_named::<Sample>("name: a\ncount: many\n", "sample.yaml").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("sample.yaml:2:8: "), "{text}");
        assert!(!text.contains(" at line "), "position given twice: {text}");
    }

    #[test]
    fn unknown_field_is_located() {
        let error =
            from_str_named::<Sample>("name: a\ncount: 1\ncolour: red\n", "s.yaml").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("s.yaml:3:1: "), "{text}");
        assert!(text.contains("unknown field `colour`"), "{text}");
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    enum Shape {
        Point,
        Circle { radius: u32 },
        Named(String),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shapes {
        shapes: Vec<Shape>,
    }

    #[test]
    fn enums_are_one_key_maps_or_plain_strings() {
        let parsed: Shapes = from_str_named(
            "shapes:\n  - point\n  - circle: { radius: 2 }\n  - named: x\n",
            "s.yaml",
        )
        .unwrap();
        assert_eq!(
            parsed.shapes,
            [
                Shape::Point,
                Shape::Circle { radius: 2 },
                Shape::Named("x".into())
            ]
        );
        let error = from_str_named::<Shapes>(
            "shapes:\n  - point\n  - circle: { radius: two }\n",
            "s.yaml",
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("s.yaml:3:23: "), "{error}");
        let error = from_str_named::<Shapes>("shapes:\n  - square: {}\n", "s.yaml").unwrap_err();
        assert!(error.to_string().starts_with("s.yaml:2:"), "{error}");
        assert!(
            error.to_string().contains("unknown variant `square`"),
            "{error}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let error = read_named(Path::new("/nonexistent/k.yaml")).unwrap_err();
        assert!(
            error.to_string().starts_with("/nonexistent/k.yaml: "),
            "{error}"
        );
    }

    #[test]
    fn locates_key_values_in_sequences() {
        let text = "kernels:\n  - id: a\n    x: 1\n  - id: \"b\"\n  - id: a # again\n";
        assert_eq!(
            locate_key_value(text, "id", "a", 0),
            Some(Location { line: 2, column: 9 })
        );
        assert_eq!(
            locate_key_value(text, "id", "b", 0),
            Some(Location { line: 4, column: 9 })
        );
        assert_eq!(
            locate_key_value(text, "id", "a", 1),
            Some(Location { line: 5, column: 9 })
        );
        assert_eq!(locate_key_value(text, "id", "c", 0), None);
        let flow = "k:\n  - { url: http://x, sha256: abc, kind: deb }\n";
        assert_eq!(
            locate_key_value(flow, "sha256", "abc", 0),
            Some(Location {
                line: 2,
                column: 30
            })
        );
        assert_eq!(
            locate_key_value(flow, "url", "http://x", 0),
            Some(Location {
                line: 2,
                column: 12
            })
        );
    }

    #[test]
    fn locates_sequence_items_flow_and_block() {
        let text = "groups:\n  default: [a, b,  c]\n  other:\n    - x\n    - 'y'\n";
        assert_eq!(
            locate_sequence_item(text, "default", "c"),
            Some(Location {
                line: 2,
                column: 20
            })
        );
        assert_eq!(
            locate_sequence_item(text, "default", "a"),
            Some(Location {
                line: 2,
                column: 13
            })
        );
        assert_eq!(
            locate_sequence_item(text, "other", "y"),
            Some(Location { line: 5, column: 7 })
        );
        assert_eq!(locate_sequence_item(text, "other", "z"), None);
    }
}
