//! The YAML front end of `nodeprep lint`: a stream of documents (as `kubectl apply -f` takes them;
//! JSON is YAML too) into trees whose every node knows its line, so that a finding names the
//! file:line of the offending field. Parsed by yaml-rust2's event parser; anchors and aliases are
//! resolved (an alias is a copy of its anchor's node, at the anchor's line).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML node and the line (1-based) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
    /// A block scalar (`|` or `>`): its `line` is that of its first line of text, not its key's.
    pub block: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Every scalar as its text (`true`, `3`, `"x"` alike): the rules compare text.
    Scalar(String),
    Seq(Vec<Node>),
    /// Keys in file order; a key is its scalar text.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value at `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at a path of mapping keys.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, k| n.get(k))
    }

    pub fn str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a sequence (none for anything else).
    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(s) => s,
            _ => &[],
        }
    }

    /// The items of the sequence at `key` of a mapping (none when absent or not a sequence).
    pub fn list(&self, key: &str) -> &[Node] {
        self.get(key).map(Node::items).unwrap_or_default()
    }

    /// The entries of a mapping (none for anything else).
    pub fn entries(&self) -> &[(String, Node)] {
        match &self.value {
            Value::Map(m) => m,
            _ => &[],
        }
    }

    /// The text at a path, when it is a scalar.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).and_then(Node::str)
    }
}

/// YAML that cannot be read: the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

enum Open {
    Seq(usize, usize, Vec<Node>),
    /// Anchor, line, entries, the key waiting for its value.
    Map(usize, usize, Vec<(String, Node)>, Option<String>),
}

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Open>,
    anchors: std::collections::HashMap<usize, Node>,
    error: Option<ParseError>,
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Open::Seq(_, _, items)) => items.push(node),
            Some(Open::Map(_, _, entries, key)) => match key.take() {
                None => match node.value {
                    Value::Scalar(k) => *key = Some(k),
                    _ => {
                        self.error.get_or_insert(ParseError {
                            line: node.line,
                            message: "a mapping key that is not a plain value".into(),
                        });
                        *key = Some(String::new());
                    }
                },
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line().max(1);
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                let block = matches!(style, TScalarStyle::Literal | TScalarStyle::Folded);
                self.push(Node { line, value: Value::Scalar(text), block }, anchor)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    line,
                    value: Value::Scalar(String::new()),
                    block: false,
                });
                self.push(node, 0);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(anchor, line, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(anchor, line, Vec::new(), None))
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq(anchor, line, items)) = self.stack.pop() {
                    self.push(Node { line, value: Value::Seq(items), block: false }, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(anchor, line, entries, _)) = self.stack.pop() {
                    self.push(Node { line, value: Value::Map(entries), block: false }, anchor);
                }
            }
            _ => {}
        }
    }
}

/// Every document of a YAML (or JSON) stream; empty documents are left out.
pub fn parse_stream(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, true).map_err(|e| ParseError {
        line: e.marker().line().max(1),
        message: e.info().to_string(),
    })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.docs
        .into_iter()
        .filter(
            |d| !matches!(&d.value, Value::Scalar(s) if s.is_empty() || s == "~" || s == "null"),
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_nodes_and_their_lines() {
        let docs =
            parse_stream("a: 1\nb:\n  - x\n  - {k: v}\n---\n# c\nc: &A [1, 2]\nd: *A\n---\n")
                .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].str_at(&["a"]), Some("1"));
        assert_eq!(docs[0].get("b").unwrap().items()[1].line, 4);
        assert_eq!(docs[0].get("b").unwrap().items()[1].str_at(&["k"]), Some("v"));
        assert_eq!(docs[1].get("c").unwrap().line, 7);
        assert_eq!(docs[1].get("d").unwrap().items().len(), 2, "alias resolved");
        let block = parse_stream("a: 1\nb: |\n  one\n  two\nc: plain\n").unwrap();
        let b = block[0].get("b").unwrap();
        assert!(b.block && b.str() == Some("one\ntwo\n"));
        assert_eq!(b.line, 3, "a block scalar's line is its first line of text");
        assert_eq!(block[0].get("c").unwrap().line, 5);
        let json = parse_stream(r#"{"kind": "List", "items": [{"kind": "Pod"}]}"#).unwrap();
        assert_eq!(json[0].get("items").unwrap().items()[0].str_at(&["kind"]), Some("Pod"));
        let e = parse_stream("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
    }
}
