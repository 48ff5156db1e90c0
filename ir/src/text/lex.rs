//! Tokenizer for the text form.

use crate::error::IrError;

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// `%name` or `%"name"`: a value.
    Value(String),
    /// `@name` or `@"name"`: a weight reference.
    Weight(String),
    /// A bare word: `[A-Za-z_][A-Za-z0-9_.]*`.
    Word(String),
    /// A number-like token starting with a digit or `-`.
    Num(String),
    /// A quoted string, unescaped.
    Str(String),
    /// `->`.
    Arrow,
    /// `::`.
    ColonColon,
    /// Single-character punctuation: `( ) [ ] { } < > , : = ? _`.
    Punct(char),
    /// End of input.
    Eof,
}

impl Tok {
    /// A short description for error messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Value(v) => format!("value `%{v}`"),
            Tok::Weight(w) => format!("weight `@{w}`"),
            Tok::Word(w) => format!("`{w}`"),
            Tok::Num(n) => format!("number `{n}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Arrow => "`->`".into(),
            Tok::ColonColon => "`::`".into(),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// True for characters allowed in a bare value or weight name after `%` / `@`.
pub(super) fn is_bare_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.')
}

fn err(line: usize, msg: impl Into<String>) -> IrError {
    IrError::Parse {
        line,
        msg: msg.into(),
    }
}

/// Split `text` into tokens, each with its 1-based line number. The last token is `Eof`.
pub(super) fn lex(text: &str) -> Result<Vec<(Tok, usize)>, IrError> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' => {
                let (s, next, lines) = lex_string(&chars, i, line)?;
                toks.push((Tok::Str(s), start_line));
                line += lines;
                i = next;
            }
            '%' | '@' => {
                i += 1;
                let name = if chars.get(i) == Some(&'"') {
                    let (s, next, lines) = lex_string(&chars, i, line)?;
                    line += lines;
                    i = next;
                    s
                } else {
                    let s = i;
                    while i < chars.len() && is_bare_name_char(chars[i]) {
                        i += 1;
                    }
                    if s == i {
                        return Err(err(line, format!("expected a name after `{c}`")));
                    }
                    chars[s..i].iter().collect()
                };
                toks.push((
                    if c == '%' {
                        Tok::Value(name)
                    } else {
                        Tok::Weight(name)
                    },
                    start_line,
                ));
            }
            '-' if chars.get(i + 1) == Some(&'>') => {
                toks.push((Tok::Arrow, line));
                i += 2;
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                toks.push((Tok::ColonColon, line));
                i += 2;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let s = i;
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    let after_exp =
                        matches!(chars[i - 1], 'e' | 'E') && !chars[s..i].contains(&'x');
                    if is_word_char(d) || (after_exp && matches!(d, '+' | '-')) {
                        i += 1;
                    } else {
                        break;
                    }
                }
                toks.push((Tok::Num(chars[s..i].iter().collect()), line));
            }
            c if is_word_start(c) => {
                let s = i;
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                let w: String = chars[s..i].iter().collect();
                let tok = if w == "_" {
                    Tok::Punct('_')
                } else {
                    Tok::Word(w)
                };
                toks.push((tok, line));
            }
            '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | ',' | ':' | '=' | '?' => {
                toks.push((Tok::Punct(c), line));
                i += 1;
            }
            other => return Err(err(line, format!("unexpected character {other:?}"))),
        }
    }
    toks.push((Tok::Eof, line));
    Ok(toks)
}

/// Lex a quoted string starting at `chars[start] == '"'`. Returns the unescaped
/// string, the index after the closing quote and how many newlines it spanned.
fn lex_string(
    chars: &[char],
    start: usize,
    line: usize,
) -> Result<(String, usize, usize), IrError> {
    let mut s = String::new();
    let mut i = start + 1;
    let mut lines = 0;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(err(line, "unterminated string"));
        };
        i += 1;
        match c {
            '"' => return Ok((s, i, lines)),
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err(err(line, "unterminated string"));
                };
                i += 1;
                match e {
                    '\\' => s.push('\\'),
                    '"' => s.push('"'),
                    'n' => s.push('\n'),
                    'r' => s.push('\r'),
                    't' => s.push('\t'),
                    '0' => s.push('\0'),
                    'u' => {
                        if chars.get(i) != Some(&'{') {
                            return Err(err(line, "expected `{` after `\\u`"));
                        }
                        let close = chars[i..]
                            .iter()
                            .take(10)
                            .position(|&c| c == '}')
                            .ok_or_else(|| err(line, "unterminated `\\u{...}` escape"))?;
                        let hex: String = chars[i + 1..i + close].iter().collect();
                        let ch = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                err(line, format!("bad unicode escape `\\u{{{hex}}}`"))
                            })?;
                        s.push(ch);
                        i += close + 1;
                    }
                    other => return Err(err(line, format!("unknown escape `\\{other}`"))),
                }
            }
            '\n' => {
                lines += 1;
                s.push('\n');
            }
            c => s.push(c),
        }
    }
}

/// Quote and escape a string so [`lex`] reads it back exactly.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn lexes_every_kind() {
        assert_eq!(
            toks("%a/b.c @\"w 1\" com.ms::Op -1.5e-3 -> [x] _ # comment\n\"q\\\"\\u{1}\""),
            vec![
                Tok::Value("a/b.c".into()),
                Tok::Weight("w 1".into()),
                Tok::Word("com.ms".into()),
                Tok::ColonColon,
                Tok::Word("Op".into()),
                Tok::Num("-1.5e-3".into()),
                Tok::Arrow,
                Tok::Punct('['),
                Tok::Word("x".into()),
                Tok::Punct(']'),
                Tok::Punct('_'),
                Tok::Str("q\"\u{1}".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn quote_round_trips() {
        for s in ["", "plain", "a\"b\\c\nd\te\r\0\u{7f}é"] {
            assert_eq!(toks(&quote(s)), vec![Tok::Str(s.into()), Tok::Eof]);
        }
    }

    #[test]
    fn errors_carry_lines() {
        let e = lex("a\nb\n\"open").unwrap_err();
        assert!(matches!(e, IrError::Parse { line: 3, .. }), "{e}");
        assert!(lex("%").is_err());
        assert!(lex("$").is_err());
        assert!(lex("\"\\u{110000}\"").is_err());
        assert!(lex("\"\\u{1").is_err());
    }
}
