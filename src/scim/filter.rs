//! Parser for SCIM 2.0 filters (RFC 7644 §3.4.2.2) and PATCH paths (RFC 7644 §3.5.2) into a typed AST.

use std::fmt;
use std::str::FromStr;

/// Maximum nesting of `(`, `not (` and `[` accepted by the parsers.
pub const MAX_DEPTH: usize = 64;

/// Maximum number of attribute expressions (comparisons and `pr` tests) in one filter.
///
/// `and`/`or` chains are parsed iteratively but produce a tree whose depth grows with the
/// number of terms; this bound keeps recursion in consumers (and in `Drop`) shallow.
pub const MAX_TERMS: usize = 1000;

/// An attribute reference: optional schema URN, attribute name, optional sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// The lowercase SCIM keyword for this operator.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// Whether `actual op want` holds for text compared case-insensitively (SCIM's default,
    /// `caseExact: false`).
    pub fn holds_ignoring_case(self, actual: &str, want: &str) -> bool {
        let (a, w) = (actual.to_lowercase(), want.to_lowercase());
        match self {
            CompareOp::Eq => a == w,
            CompareOp::Ne => a != w,
            CompareOp::Co => a.contains(&w),
            CompareOp::Sw => a.starts_with(&w),
            CompareOp::Ew => a.ends_with(&w),
            CompareOp::Gt => a > w,
            CompareOp::Ge => a >= w,
            CompareOp::Lt => a < w,
            CompareOp::Le => a <= w,
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Str(String),
    Bool(bool),
    Null,
    Number(serde_json::Number),
}

/// The value as it is written in a filter: JSON text.
impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => write_json_string(f, s),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
            CompValue::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A JSON string literal (RFC 8259 §7): quotes, backslashes and control characters escaped,
/// everything else as it is.
fn write_json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    use fmt::Write;
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if c < ' ' => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `emails[type eq "work"]`: `attr` has no `sub`; the inner filter's paths are relative to the attribute's elements
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
    },
}

/// Canonical filter text, which `parse_filter` reads back to the same AST: lowercase operators,
/// single spaces, parentheses only where precedence needs them (`and` binds tighter than `or`,
/// and both group to the left), values as JSON. Entra's `emails[type eq "work"].value eq "x"`,
/// parsed as a value path whose filter ends in the comparison, prints as the equivalent
/// `emails[type eq "work" and value eq "x"]`.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn operand(f: &mut fmt::Formatter<'_>, filter: &Filter, grouped: bool) -> fmt::Result {
            if grouped {
                write!(f, "({filter})")
            } else {
                write!(f, "{filter}")
            }
        }
        match self {
            Filter::Or(a, b) => {
                write!(f, "{a} or ")?;
                operand(f, b, matches!(**b, Filter::Or(..)))
            }
            Filter::And(a, b) => {
                operand(f, a, matches!(**a, Filter::Or(..)))?;
                f.write_str(" and ")?;
                operand(f, b, matches!(**b, Filter::Or(..) | Filter::And(..)))
            }
            Filter::Not(a) => write!(f, "not ({a})"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

/// PATCH path: `attrPath` or `valuePath [ "." subAttr ]`
///
/// For `name.givenName`: attr = {name:"name", sub:Some("givenName")}, filter None, sub None.
/// For `emails[type eq "work"].value`: attr = {name:"emails", sub:None}, filter Some(..), sub Some("value").
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct ParseError {
    /// Byte offset into the input where the problem was detected.
    pub position: usize,
    pub message: String,
}

/// Parses a SCIM filter expression (the `filter` query parameter).
///
/// Besides the RFC 7644 grammar this accepts Entra ID's `attr[filter].sub op value` form,
/// which is returned as `ValuePath { attr, filter: And(filter, sub op value) }`.
pub fn parse_filter(input: &str) -> Result<Filter, ParseError> {
    let mut p = Parser::new(input);
    p.skip_ws();
    if p.at_end() {
        return p.err(p.pos, "empty filter");
    }
    let filter = p.parse_or("at start of filter")?;
    p.skip_ws();
    match p.peek() {
        None => Ok(filter),
        Some(b')') => p.err(p.pos, "unbalanced parenthesis: unexpected ')'"),
        Some(b']') => p.err(p.pos, "unexpected ']' without matching '['"),
        Some(_) => p.err(
            p.pos,
            format!("expected 'and', 'or' or end of filter, found {}", p.found()),
        ),
    }
}

/// Parses a SCIM PATCH operation `path` (RFC 7644 §3.5.2 PATH grammar).
pub fn parse_path(input: &str) -> Result<PatchPath, ParseError> {
    let mut p = Parser::new(input);
    p.skip_ws();
    if p.at_end() {
        return p.err(p.pos, "empty path");
    }
    let start = p.pos;
    let attr = p.parse_attr_path("expected attribute path")?;
    let mut filter = None;
    let mut sub = None;
    if p.peek() == Some(b'[') {
        filter = Some(p.parse_bracket(&attr)?);
        if p.peek() == Some(b'.') {
            p.pos += 1;
            sub = Some(p.expect_sub_attr_name()?);
        }
    }
    let end = p.pos;
    p.skip_ws();
    if !p.at_end() {
        let path = snippet(p.slice(start, end));
        return p.err(
            p.pos,
            format!("expected end of path after \"{path}\", found {}", p.found()),
        );
    }
    Ok(PatchPath { attr, filter, sub })
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_urn_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'$')
}

fn is_value_delim(b: u8) -> bool {
    is_ws(b) || matches!(b, b'(' | b')' | b'[' | b']' | b'"')
}

/// What follows an attribute path in an attribute expression.
enum Operator {
    Present,
    Compare(CompareOp),
}

/// The operator a keyword names, case-insensitively.
fn operator(word: &str) -> Option<Operator> {
    let op = match word.to_ascii_lowercase().as_str() {
        "pr" => return Some(Operator::Present),
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "co" => CompareOp::Co,
        "sw" => CompareOp::Sw,
        "ew" => CompareOp::Ew,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        _ => return None,
    };
    Some(Operator::Compare(op))
}

/// Shortens text echoed in error messages.
fn snippet(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() > MAX {
        let mut out: String = s.chars().take(MAX).collect();
        out.push_str("...");
        out
    } else {
        s.to_string()
    }
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    /// Byte offset of the next unread byte; always on a char boundary.
    pos: usize,
    depth: usize,
    terms: usize,
    in_value_filter: bool,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            depth: 0,
            terms: 0,
            in_value_filter: false,
        }
    }

    fn err<T>(&self, position: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            position,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.src.get(start..end).unwrap_or("")
    }

    /// Returns the end of the run of bytes starting at `from` that satisfy `pred`.
    fn scan_while(&self, from: usize, pred: impl Fn(u8) -> bool) -> usize {
        let mut i = from;
        while self.bytes.get(i).copied().is_some_and(&pred) {
            i += 1;
        }
        i
    }

    /// The run of ASCII letters/digits at `from` (used for keywords) and its end.
    fn word_at(&self, from: usize) -> (usize, &'a str) {
        let end = self.scan_while(from, |b| b.is_ascii_alphanumeric());
        (end, self.slice(from, end))
    }

    fn starts_with_ci(&self, from: usize, prefix: &str) -> bool {
        self.bytes
            .get(from..from + prefix.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(prefix.as_bytes()))
    }

    /// Describes the input at the current position for error messages.
    fn found(&self) -> String {
        let rest = self.src.get(self.pos..).unwrap_or("");
        match rest.chars().next() {
            None => "end of input".to_string(),
            Some(c @ ('(' | ')' | '[' | ']' | '"')) => format!("'{c}'"),
            Some(_) => {
                let tok: String = rest
                    .chars()
                    .take_while(|c| !c.is_ascii() || !is_value_delim(*c as u8))
                    .take(32)
                    .collect();
                format!("\"{tok}\"")
            }
        }
    }

    fn enter(&mut self, open: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(
                open,
                format!("filter nesting too deep (maximum depth is {MAX_DEPTH})"),
            );
        }
        Ok(())
    }

    fn expect_close(&mut self, close: u8, open: usize) -> Result<(), ParseError> {
        self.skip_ws();
        match self.peek() {
            Some(c) if c == close => {
                self.pos += 1;
                self.depth = self.depth.saturating_sub(1);
                Ok(())
            }
            None if close == b')' => self.err(
                self.pos,
                format!("unbalanced parenthesis: missing ')' to close '(' at position {open}"),
            ),
            None => self.err(
                self.pos,
                format!("unterminated value filter: missing ']' to close '[' at position {open}"),
            ),
            Some(_) => self.err(
                self.pos,
                format!(
                    "expected 'and', 'or' or '{}', found {}",
                    close as char,
                    self.found()
                ),
            ),
        }
    }

    fn parse_or(&mut self, ctx: &str) -> Result<Filter, ParseError> {
        let mut left = self.parse_and(ctx)?;
        loop {
            let save = self.pos;
            self.skip_ws();
            let (end, word) = self.word_at(self.pos);
            if word.eq_ignore_ascii_case("or") {
                self.pos = end;
                let right = self.parse_and("after 'or'")?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn parse_and(&mut self, ctx: &str) -> Result<Filter, ParseError> {
        let mut left = self.parse_unary(ctx)?;
        loop {
            let save = self.pos;
            self.skip_ws();
            let (end, word) = self.word_at(self.pos);
            if word.eq_ignore_ascii_case("and") {
                self.pos = end;
                let right = self.parse_unary("after 'and'")?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn parse_unary(&mut self, ctx: &str) -> Result<Filter, ParseError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => self.err(
                start,
                format!("unexpected end of filter: expected attribute path, '(' or 'not' {ctx}"),
            ),
            Some(b'(') => {
                self.pos += 1;
                self.enter(start)?;
                let inner = self.parse_or("after '('")?;
                self.expect_close(b')', start)?;
                Ok(inner)
            }
            Some(_) => {
                if self.at_logical_not(start) {
                    self.pos = start + "not".len();
                    self.skip_ws();
                    if self.peek() != Some(b'(') {
                        return self.err(
                            self.pos,
                            format!("expected '(' after 'not', found {}", self.found()),
                        );
                    }
                    let open = self.pos;
                    self.pos += 1;
                    self.enter(open)?;
                    let inner = self.parse_or("after 'not ('")?;
                    self.expect_close(b')', open)?;
                    Ok(Filter::Not(Box::new(inner)))
                } else {
                    let expected = format!("expected attribute path, '(' or 'not' {ctx}");
                    self.parse_attr_exp(&expected)
                }
            }
        }
    }

    /// Whether the input at `from` is the logical `not` rather than an attribute whose name is
    /// or starts with "not" (`not-before`, `not_x`, or `not` itself, all valid RFC 7643 ATTRNAMEs).
    /// The operator is followed by `(`; an attribute by `.`, `[`, more name characters or `pr` and
    /// the comparison operators.
    fn at_logical_not(&self, from: usize) -> bool {
        let end = self.scan_while(from, is_name_char);
        if !self.slice(from, end).eq_ignore_ascii_case("not")
            || matches!(self.bytes.get(end), Some(b'.' | b'['))
        {
            return false;
        }
        let next = self.scan_while(end, is_ws);
        let (_, word) = self.word_at(next);
        next == end || operator(word).is_none()
    }

    /// attrExp, valuePath, or Entra's `valuePath "." subAttr (pr / compareOp compValue)`.
    fn parse_attr_exp(&mut self, expected: &str) -> Result<Filter, ParseError> {
        let start = self.pos;
        let path = self.parse_attr_path(expected)?;
        if self.peek() != Some(b'[') {
            return self.parse_op_and_value(path, start);
        }
        let inner = self.parse_bracket(&path)?;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let sub = self.expect_sub_attr_name()?;
            let rel = AttrPath {
                urn: None,
                name: sub,
                sub: None,
            };
            let term = self.parse_op_and_value(rel, start)?;
            return Ok(Filter::ValuePath {
                attr: path,
                filter: Box::new(Filter::And(Box::new(inner), Box::new(term))),
            });
        }
        Ok(Filter::ValuePath {
            attr: path,
            filter: Box::new(inner),
        })
    }

    /// Parses `[valFilter]` at the current position (which holds `[`).
    fn parse_bracket(&mut self, attr: &AttrPath) -> Result<Filter, ParseError> {
        let open = self.pos;
        if self.in_value_filter {
            return self.err(open, "nested value filters are not allowed");
        }
        if attr.sub.is_some() {
            return self.err(
                open,
                format!("value filter '[' cannot follow sub-attribute \"{attr}\""),
            );
        }
        self.pos += 1;
        self.enter(open)?;
        self.in_value_filter = true;
        let inner = self.parse_or("after '['")?;
        self.expect_close(b']', open)?;
        self.in_value_filter = false;
        Ok(inner)
    }

    fn parse_op_and_value(&mut self, path: AttrPath, start: usize) -> Result<Filter, ParseError> {
        let after = snippet(self.slice(start, self.pos));
        self.skip_ws();
        let op_pos = self.pos;
        let (end, word) = self.word_at(op_pos);
        let Some(op) = operator(word) else {
            return self.err(
                op_pos,
                format!(
                    "expected comparison operator after \"{after}\", found {}",
                    self.found()
                ),
            );
        };
        self.pos = end;
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return self.err(
                start,
                format!("filter has too many expressions (maximum is {MAX_TERMS})"),
            );
        }
        match op {
            Operator::Present => Ok(Filter::Present(path)),
            Operator::Compare(op) => {
                let value = self.parse_value(op)?;
                Ok(Filter::Compare { path, op, value })
            }
        }
    }

    fn parse_value(&mut self, op: CompareOp) -> Result<CompValue, ParseError> {
        self.skip_ws();
        let start = self.pos;
        if self.peek() == Some(b'"') {
            return self.parse_string().map(CompValue::Str);
        }
        let end = self.scan_while(start, |b| !is_value_delim(b));
        let tok = self.slice(start, end);
        if tok.is_empty() {
            return self.err(
                start,
                format!(
                    "expected comparison value after \"{op}\", found {}",
                    self.found()
                ),
            );
        }
        let value = if tok.eq_ignore_ascii_case("true") {
            CompValue::Bool(true)
        } else if tok.eq_ignore_ascii_case("false") {
            CompValue::Bool(false)
        } else if tok.eq_ignore_ascii_case("null") {
            CompValue::Null
        } else if tok.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            match serde_json::Number::from_str(tok) {
                Ok(n) => CompValue::Number(n),
                Err(_) => {
                    return self.err(start, format!("invalid number \"{}\"", snippet(tok)));
                }
            }
        } else {
            return self.err(
                start,
                format!(
                    "invalid comparison value \"{}\": expected a JSON string, number, true, false or null",
                    snippet(tok)
                ),
            );
        };
        self.pos = end;
        Ok(value)
    }

    /// Parses a JSON string literal at the current position (which holds `"`).
    fn parse_string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            match self.bytes.get(i) {
                None => return self.err(start, "unterminated string"),
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let literal = self.slice(start, i + 1);
        match serde_json::from_str::<String>(literal) {
            Ok(s) => {
                self.pos = i + 1;
                Ok(s)
            }
            Err(e) => {
                let full = e.to_string();
                let reason = full.rfind(" at line ").map_or(full.as_str(), |idx| {
                    full.get(..idx).unwrap_or(full.as_str())
                });
                let guess = (start + e.column().saturating_sub(1)).min(i);
                let position = if self.src.is_char_boundary(guess) {
                    guess
                } else {
                    start
                };
                self.err(position, format!("invalid string literal: {reason}"))
            }
        }
    }

    fn take_attr_name(&mut self) -> Option<String> {
        let start = self.pos;
        let body = if self.peek() == Some(b'$') {
            start + 1
        } else {
            start
        };
        if !self
            .bytes
            .get(body)
            .is_some_and(|b| b.is_ascii_alphabetic())
        {
            return None;
        }
        let end = self.scan_while(body + 1, is_name_char);
        self.pos = end;
        Some(self.slice(start, end).to_string())
    }

    fn expect_sub_attr_name(&mut self) -> Result<String, ParseError> {
        match self.take_attr_name() {
            Some(name) => Ok(name),
            None => self.err(
                self.pos,
                format!(
                    "expected sub-attribute name after '.', found {}",
                    self.found()
                ),
            ),
        }
    }

    /// `[URN ":"] ATTRNAME ["." ATTRNAME]`. The URN is everything before the last `:`.
    fn parse_attr_path(&mut self, expected: &str) -> Result<AttrPath, ParseError> {
        let start = self.pos;
        let mut urn = None;
        if self.starts_with_ci(start, "urn:") {
            if self.in_value_filter {
                return self.err(
                    start,
                    "schema URN prefix is not allowed inside a value filter",
                );
            }
            let end = self.scan_while(start, is_urn_char);
            let last = self
                .bytes
                .get(start..end)
                .and_then(|run| run.iter().rposition(|&b| b == b':'))
                .map_or(start + 3, |i| start + i);
            urn = Some(self.slice(start, last).to_string());
            self.pos = last + 1;
        }
        let name = match self.take_attr_name() {
            Some(name) => name,
            None => {
                return match &urn {
                    Some(u) => self.err(
                        self.pos,
                        format!(
                            "expected attribute name after schema URN \"{}\", found {}",
                            snippet(u),
                            self.found()
                        ),
                    ),
                    None => self.err(self.pos, format!("{expected}, found {}", self.found())),
                };
            }
        };
        let mut sub = None;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            sub = Some(self.expect_sub_attr_name()?);
        }
        Ok(AttrPath { urn, name, sub })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn ap(name: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: None,
        }
    }

    fn aps(name: &str, sub: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: Some(sub.into()),
        }
    }

    fn apu(urn: &str, name: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: Some(urn.into()),
            name: name.into(),
            sub: sub.map(Into::into),
        }
    }

    fn s(v: &str) -> CompValue {
        CompValue::Str(v.into())
    }

    fn cmp(path: AttrPath, op: CompareOp, value: CompValue) -> Filter {
        Filter::Compare { path, op, value }
    }

    fn eq(name: &str, v: &str) -> Filter {
        cmp(ap(name), CompareOp::Eq, s(v))
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }

    fn vp(attr: &str, f: Filter) -> Filter {
        Filter::ValuePath {
            attr: ap(attr),
            filter: Box::new(f),
        }
    }

    fn pf(input: &str) -> Filter {
        parse_filter(input).unwrap_or_else(|e| panic!("{input:?} failed: {e}"))
    }

    fn perr(input: &str) -> ParseError {
        match parse_filter(input) {
            Ok(f) => panic!("{input:?} unexpectedly parsed as {f:?}"),
            Err(e) => e,
        }
    }

    fn pp(input: &str) -> PatchPath {
        parse_path(input).unwrap_or_else(|e| panic!("{input:?} failed: {e}"))
    }

    fn pperr(input: &str) -> ParseError {
        match parse_path(input) {
            Ok(p) => panic!("{input:?} unexpectedly parsed as {p:?}"),
            Err(e) => e,
        }
    }

    fn num(f: &Filter) -> serde_json::Number {
        match f {
            Filter::Compare {
                value: CompValue::Number(n),
                ..
            } => n.clone(),
            other => panic!("not a numeric comparison: {other:?}"),
        }
    }

    #[test]
    fn every_operator() {
        let ops = [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("co", CompareOp::Co),
            ("sw", CompareOp::Sw),
            ("ew", CompareOp::Ew),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ];
        for (word, op) in ops {
            assert_eq!(
                pf(&format!("userName {word} \"bjensen\"")),
                cmp(ap("userName"), op, s("bjensen"))
            );
            assert_eq!(
                pf(&format!("userName {} \"bjensen\"", word.to_uppercase())),
                cmp(ap("userName"), op, s("bjensen"))
            );
            assert_eq!(op.to_string(), word);
            assert_eq!(op.as_str(), word);
        }
        assert_eq!(pf("title pr"), Filter::Present(ap("title")));
        assert_eq!(pf("title PR"), Filter::Present(ap("title")));
        assert_eq!(pf("title Pr"), Filter::Present(ap("title")));
    }

    #[test]
    fn rfc_examples() {
        assert_eq!(pf("userName eq \"bjensen\""), eq("userName", "bjensen"));
        assert_eq!(
            pf("name.familyName co \"O'Malley\""),
            cmp(aps("name", "familyName"), CompareOp::Co, s("O'Malley"))
        );
        assert_eq!(
            pf("meta.lastModified gt \"2011-05-13T04:42:34Z\""),
            cmp(
                aps("meta", "lastModified"),
                CompareOp::Gt,
                s("2011-05-13T04:42:34Z")
            )
        );
        assert_eq!(
            pf("title pr and userType eq \"Employee\""),
            and(Filter::Present(ap("title")), eq("userType", "Employee"))
        );
        assert_eq!(
            pf("userType eq \"Employee\" and (emails co \"example.com\" or emails.value co \"example.org\")"),
            and(
                eq("userType", "Employee"),
                or(
                    cmp(ap("emails"), CompareOp::Co, s("example.com")),
                    cmp(aps("emails", "value"), CompareOp::Co, s("example.org"))
                )
            )
        );
        assert_eq!(
            pf("userType ne \"Employee\" and not (emails co \"example.com\" or emails.value co \"example.org\")"),
            and(
                cmp(ap("userType"), CompareOp::Ne, s("Employee")),
                not(or(
                    cmp(ap("emails"), CompareOp::Co, s("example.com")),
                    cmp(aps("emails", "value"), CompareOp::Co, s("example.org"))
                ))
            )
        );
        assert_eq!(
            pf("userType eq \"Employee\" and emails[type eq \"work\" and value co \"@example.com\"]"),
            and(
                eq("userType", "Employee"),
                vp(
                    "emails",
                    and(eq("type", "work"), cmp(ap("value"), CompareOp::Co, s("@example.com")))
                )
            )
        );
        assert_eq!(
            pf("emails[type eq \"work\" and value co \"@example.com\"] or ims[type eq \"xmpp\" and value co \"@foo.com\"]"),
            or(
                vp(
                    "emails",
                    and(eq("type", "work"), cmp(ap("value"), CompareOp::Co, s("@example.com")))
                ),
                vp(
                    "ims",
                    and(eq("type", "xmpp"), cmp(ap("value"), CompareOp::Co, s("@foo.com")))
                )
            )
        );
    }

    #[test]
    fn keywords_case_insensitive_names_case_preserved() {
        assert_eq!(pf("UserName Eq \"X\""), eq("UserName", "X"));
        assert_eq!(
            pf("a eq \"1\" AND b eq \"2\""),
            and(eq("a", "1"), eq("b", "2"))
        );
        assert_eq!(
            pf("a eq \"1\" Or b eq \"2\""),
            or(eq("a", "1"), eq("b", "2"))
        );
        assert_eq!(pf("NOT (a eq \"1\")"), not(eq("a", "1")));
        assert_eq!(pf("Not(a eq \"1\")"), not(eq("a", "1")));
        assert_eq!(
            pf("active eq True"),
            cmp(ap("active"), CompareOp::Eq, CompValue::Bool(true))
        );
        assert_eq!(
            pf("active eq FALSE"),
            cmp(ap("active"), CompareOp::Eq, CompValue::Bool(false))
        );
        assert_eq!(
            pf("manager eq NULL"),
            cmp(ap("manager"), CompareOp::Eq, CompValue::Null)
        );
    }

    #[test]
    fn precedence_and_associativity() {
        let (a, b, c) = (eq("a", "1"), eq("b", "2"), eq("c", "3"));
        assert_eq!(
            pf("a eq \"1\" or b eq \"2\" and c eq \"3\""),
            or(a.clone(), and(b.clone(), c.clone()))
        );
        assert_eq!(
            pf("a eq \"1\" and b eq \"2\" or c eq \"3\""),
            or(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            pf("a eq \"1\" or b eq \"2\" or c eq \"3\""),
            or(or(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            pf("a eq \"1\" and b eq \"2\" and c eq \"3\""),
            and(and(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            pf("(a eq \"1\" or b eq \"2\") and c eq \"3\""),
            and(or(a.clone(), b.clone()), c.clone())
        );
        assert_eq!(
            pf("a eq \"1\" and (b eq \"2\" or c eq \"3\")"),
            and(a.clone(), or(b.clone(), c.clone()))
        );
        assert_eq!(pf("((a eq \"1\"))"), a.clone());
        assert_eq!(
            pf("not (a eq \"1\") and b eq \"2\""),
            and(not(a.clone()), b.clone())
        );
        assert_eq!(
            pf("a eq \"1\" or not (b eq \"2\" or c eq \"3\")"),
            or(a.clone(), not(or(b.clone(), c.clone())))
        );
        assert_eq!(pf("not   (not (a eq \"1\"))"), not(not(a)));
    }

    #[test]
    fn whitespace_handling() {
        assert_eq!(pf("  userName   eq   \"x\"  "), eq("userName", "x"));
        assert_eq!(pf("\tuserName\teq\t\"x\"\n"), eq("userName", "x"));
        assert_eq!(
            pf("( a eq \"1\"  or  b pr )"),
            or(eq("a", "1"), Filter::Present(ap("b")))
        );
        assert_eq!(
            pf("emails[ type eq \"work\" ]"),
            vp("emails", eq("type", "work"))
        );
        // String values keep their inner whitespace.
        assert_eq!(
            pf("displayName eq \"  Group  A \""),
            eq("displayName", "  Group  A ")
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            pf(r#"x eq "a\"b\\c\u00e9\n\t\/\r\b\f""#),
            eq("x", "a\"b\\c\u{e9}\n\t/\r\u{8}\u{c}")
        );
        assert_eq!(pf(r#"x eq "\ud83d\ude00""#), eq("x", "\u{1F600}"));
        assert_eq!(pf("x eq \"Zoë Ünïcødé 日本\""), eq("x", "Zoë Ünïcødé 日本"));
        assert_eq!(pf("x eq \"\""), eq("x", ""));
        assert_eq!(pf("x eq \"a)b]c(d[e\""), eq("x", "a)b]c(d[e"));
        assert_eq!(pf("x eq \"and or not\""), eq("x", "and or not"));
        let e = perr(r#"x eq "bad\x""#);
        assert!(e.message.starts_with("invalid string literal"), "{e}");
        assert!(!e.message.contains("line"), "{e}");
        let e = perr("x eq \"unterminated");
        assert_eq!(e.message, "unterminated string");
        assert_eq!(e.position, 5);
        let e = perr(r#"x eq "ends with escape\""#);
        assert_eq!(e.message, "unterminated string");
    }

    #[test]
    fn numbers_bools_null() {
        assert_eq!(num(&pf("n eq 42")), serde_json::Number::from(42));
        assert_eq!(num(&pf("n gt -7")), serde_json::Number::from(-7));
        assert_eq!(num(&pf("n eq 0")), serde_json::Number::from(0));
        assert_eq!(num(&pf("n lt 2.75")).as_f64(), Some(2.75));
        assert_eq!(num(&pf("n le 1e3")).as_f64(), Some(1000.0));
        assert_eq!(num(&pf("n ge -2.5E-3")).as_f64(), Some(-0.0025));
        assert_eq!(num(&pf("n eq 1E+2")).as_f64(), Some(100.0));
        assert_eq!(
            pf("(n eq 5)"),
            cmp(ap("n"), CompareOp::Eq, CompValue::Number(5.into()))
        );
        assert_eq!(
            pf("emails[primary eq true]"),
            vp(
                "emails",
                cmp(ap("primary"), CompareOp::Eq, CompValue::Bool(true))
            )
        );
        for bad in [
            "n eq 01",
            "n eq 1.",
            "n eq -",
            "n eq 1e",
            "n eq 1.2.3",
            "n eq 12abc",
        ] {
            let e = perr(bad);
            assert!(e.message.starts_with("invalid number"), "{bad}: {e}");
            assert_eq!(e.position, 5, "{bad}");
        }
        for bad in ["n eq abc", "n eq bjensen", "n eq 'x'", "n eq truex"] {
            let e = perr(bad);
            assert!(
                e.message.starts_with("invalid comparison value"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn urn_paths() {
        assert_eq!(
            pf(&format!("{CORE}:userName eq \"x\"")),
            cmp(apu(CORE, "userName", None), CompareOp::Eq, s("x"))
        );
        assert_eq!(
            pf(&format!("{CORE}:name.givenName sw \"Ba\"")),
            cmp(apu(CORE, "name", Some("givenName")), CompareOp::Sw, s("Ba"))
        );
        assert_eq!(
            pf(&format!("{ENT}:employeeNumber eq \"701984\"")),
            cmp(apu(ENT, "employeeNumber", None), CompareOp::Eq, s("701984"))
        );
        assert_eq!(
            pf(&format!("{ENT}:manager.value eq \"26118915\"")),
            cmp(
                apu(ENT, "manager", Some("value")),
                CompareOp::Eq,
                s("26118915")
            )
        );
        assert_eq!(
            pf(&format!("({ENT}:department pr)")),
            Filter::Present(apu(ENT, "department", None))
        );
        let upper = "URN:IETF:params:scim:schemas:core:2.0:User";
        assert_eq!(
            pf(&format!("{upper}:userName eq \"x\"")),
            cmp(apu(upper, "userName", None), CompareOp::Eq, s("x"))
        );
        assert_eq!(
            pf(&format!("{ENT}:manager[value eq \"x\"]")),
            Filter::ValuePath {
                attr: apu(ENT, "manager", None),
                filter: Box::new(eq("value", "x"))
            }
        );
        let e = perr("urn:ietf:params:scim:schemas:core:2.0 pr");
        assert!(
            e.message
                .starts_with("expected attribute name after schema URN"),
            "{e}"
        );
        let e = perr("urn: pr");
        assert!(
            e.message
                .starts_with("expected attribute name after schema URN"),
            "{e}"
        );
        let e = perr(&format!("emails[{CORE}:type eq \"x\"]"));
        assert!(
            e.message.contains("not allowed inside a value filter"),
            "{e}"
        );
    }

    #[test]
    fn value_paths() {
        assert_eq!(
            pf("emails[type eq \"work\"]"),
            vp("emails", eq("type", "work"))
        );
        assert_eq!(
            pf("emails[type eq \"work\" or type eq \"home\" and primary eq true]"),
            vp(
                "emails",
                or(
                    eq("type", "work"),
                    and(
                        eq("type", "home"),
                        cmp(ap("primary"), CompareOp::Eq, CompValue::Bool(true))
                    )
                )
            )
        );
        assert_eq!(
            pf("emails[(type eq \"work\" or type eq \"home\") and not (value ew \"@x.com\")]"),
            vp(
                "emails",
                and(
                    or(eq("type", "work"), eq("type", "home")),
                    not(cmp(ap("value"), CompareOp::Ew, s("@x.com")))
                )
            )
        );
        assert_eq!(
            pf("members[value eq \"2819c223\"]"),
            vp("members", eq("value", "2819c223"))
        );
        assert_eq!(
            pf("members[$ref eq \"https://x/Users/1\"]"),
            vp("members", eq("$ref", "https://x/Users/1"))
        );
        assert_eq!(
            pf("members.$ref pr"),
            Filter::Present(aps("members", "$ref"))
        );
        assert_eq!(
            pf("not (emails[type pr])"),
            not(vp("emails", Filter::Present(ap("type"))))
        );
        let e = perr("emails[type eq \"work\" and addresses[type pr]]");
        assert_eq!(e.message, "nested value filters are not allowed");
        assert_eq!(e.position, 35);
        let e = perr("name.givenName[value pr]");
        assert!(e.message.contains("cannot follow sub-attribute"), "{e}");
        let e = perr("emails[type eq \"work\"");
        assert!(e.message.starts_with("unterminated value filter"), "{e}");
        assert_eq!(e.position, 21);
        let e = perr("emails[type eq \"work\")");
        assert!(e.message.starts_with("expected 'and', 'or' or ']'"), "{e}");
        let e = perr("emails[]");
        assert!(e.message.contains("after '['"), "{e}");
        let e = perr("emails[type eq \"work\"] eq \"x\"");
        assert!(
            e.message
                .starts_with("expected 'and', 'or' or end of filter"),
            "{e}"
        );
    }

    #[test]
    fn entra_value_path_with_sub_attribute() {
        assert_eq!(
            pf("emails[type eq \"work\"].value eq \"a@b.c\""),
            vp("emails", and(eq("type", "work"), eq("value", "a@b.c")))
        );
        assert_eq!(
            pf("emails[type eq \"work\"].value pr"),
            vp(
                "emails",
                and(eq("type", "work"), Filter::Present(ap("value")))
            )
        );
        assert_eq!(
            pf("emails[type eq \"work\" or primary eq true].value EQ \"x\" and active eq true"),
            and(
                vp(
                    "emails",
                    and(
                        or(
                            eq("type", "work"),
                            cmp(ap("primary"), CompareOp::Eq, CompValue::Bool(true))
                        ),
                        eq("value", "x")
                    )
                ),
                cmp(ap("active"), CompareOp::Eq, CompValue::Bool(true))
            )
        );
        assert_eq!(
            pf("addresses[type eq \"work\"].postalCode co \"98\""),
            vp(
                "addresses",
                and(
                    eq("type", "work"),
                    cmp(ap("postalCode"), CompareOp::Co, s("98"))
                )
            )
        );
        let e = perr("emails[type eq \"work\"].value");
        assert_eq!(
            e.message,
            "expected comparison operator after \"emails[type eq \"work\"].value\", found end of input"
        );
        let e = perr("emails[type eq \"work\"]. eq \"x\"");
        assert!(
            e.message
                .starts_with("expected sub-attribute name after '.'"),
            "{e}"
        );
    }

    #[test]
    fn error_messages() {
        let e = perr("");
        assert_eq!((e.position, e.message.as_str()), (0, "empty filter"));
        let e = perr("   ");
        assert_eq!((e.position, e.message.as_str()), (3, "empty filter"));

        let e = perr("userName foo \"x\"");
        assert_eq!(e.position, 9);
        assert_eq!(
            e.message,
            "expected comparison operator after \"userName\", found \"foo\""
        );
        let e = perr("userName");
        assert!(
            e.message
                .starts_with("expected comparison operator after \"userName\""),
            "{e}"
        );
        let e = perr("userName == \"x\"");
        assert!(
            e.message
                .starts_with("expected comparison operator after \"userName\""),
            "{e}"
        );
        let e = perr("userName eq");
        assert!(
            e.message
                .starts_with("expected comparison value after \"eq\""),
            "{e}"
        );
        let e = perr("userName eq )");
        assert!(e.message.starts_with("expected comparison value"), "{e}");

        let e = perr("userName eq \"x\" and");
        assert!(e.message.contains("end of filter"), "{e}");
        assert!(e.message.contains("after 'and'"), "{e}");
        let e = perr("userName eq \"x\" or ");
        assert!(e.message.contains("after 'or'"), "{e}");
        let e = perr("and userName eq \"x\"");
        assert!(
            e.message
                .starts_with("expected comparison operator after \"and\""),
            "{e}"
        );

        let e = perr("(userName pr");
        assert!(e.message.starts_with("unbalanced parenthesis"), "{e}");
        assert_eq!(e.position, 12);
        let e = perr("userName pr)");
        assert_eq!(e.message, "unbalanced parenthesis: unexpected ')'");
        assert_eq!(e.position, 11);
        let e = perr("((userName pr)");
        assert!(e.message.starts_with("unbalanced parenthesis"), "{e}");
        let e = perr("()");
        assert!(e.message.contains("after '('"), "{e}");
        let e = perr("userName pr]");
        assert!(e.message.contains("']'"), "{e}");

        let e = perr("not userName pr");
        assert_eq!(e.message, "expected '(' after 'not', found \"userName\"");
        let e = perr("not");
        assert_eq!(e.message, "expected '(' after 'not', found end of input");

        let e = perr("userName pr extra");
        assert_eq!(
            e.message,
            "expected 'and', 'or' or end of filter, found \"extra\""
        );
        let e = perr("userName pr andx title pr");
        assert!(e.message.contains("found \"andx\""), "{e}");
        let e = perr("1abc pr");
        assert!(e.message.starts_with("expected attribute path"), "{e}");
        let e = perr("_abc pr");
        assert!(e.message.starts_with("expected attribute path"), "{e}");
        let e = perr("name. pr");
        assert!(e.message.starts_with("expected sub-attribute name"), "{e}");
        let e = perr("name.givenName.x pr");
        assert!(e.message.starts_with("expected comparison operator"), "{e}");

        let e = perr("userName foo \"x\"");
        assert_eq!(
            e.to_string(),
            "expected comparison operator after \"userName\", found \"foo\" at position 9"
        );
    }

    #[test]
    fn floats_parse_to_the_nearest_double() {
        // The shortest text of a double parses back to it (found by the round-trip property:
        // serde_json's default fast float parsing was one unit in the last place off here).
        for x in [-9.420383100089905e91, 2.2250738585072014e-308, 0.1, 1e300] {
            let text = serde_json::Number::from_f64(x).unwrap().to_string();
            assert_eq!(
                num(&pf(&format!("n eq {text}"))).as_f64(),
                Some(x),
                "{text}"
            );
        }
    }

    #[test]
    fn attributes_named_like_not() {
        assert_eq!(pf("not-before pr"), Filter::Present(ap("not-before")));
        assert_eq!(
            pf("not_x eq 1"),
            cmp(ap("not_x"), CompareOp::Eq, CompValue::Number(1.into()))
        );
        assert_eq!(pf("not pr"), Filter::Present(ap("not")));
        assert_eq!(pf("NOT eq \"x\""), eq("NOT", "x"));
        assert_eq!(pf("not.value pr"), Filter::Present(aps("not", "value")));
        assert_eq!(pf("not[value pr]"), vp("not", Filter::Present(ap("value"))));
        assert_eq!(pf("not (not pr)"), not(Filter::Present(ap("not"))));
        assert_eq!(pf("not(a pr)"), not(Filter::Present(ap("a"))));
        assert_eq!(pf("notable pr"), Filter::Present(ap("notable")));
        let e = perr("not not pr");
        assert_eq!(e.message, "expected '(' after 'not', found \"not\"");
    }

    #[test]
    fn nesting_depth_limit() {
        let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(pf(&ok), Filter::Present(ap("a")));
        let bad = format!(
            "{}a pr{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let e = perr(&bad);
        assert!(e.message.contains("too deep"), "{e}");
        assert_eq!(e.position, MAX_DEPTH);
        let nots = format!("{}a pr{}", "not (".repeat(100), ")".repeat(100));
        assert!(perr(&nots).message.contains("too deep"));
        // Hostile input far beyond the limit must not overflow the stack.
        let huge = "(".repeat(200_000);
        assert!(perr(&huge).message.contains("too deep"));
        let huge_not = "not(".repeat(100_000);
        assert!(perr(&huge_not).message.contains("too deep"));
    }

    #[test]
    fn term_limit() {
        let ok = vec!["a pr"; MAX_TERMS].join(" or ");
        assert!(parse_filter(&ok).is_ok());
        let bad = vec!["a pr"; MAX_TERMS + 1].join(" and ");
        let e = perr(&bad);
        assert!(e.message.contains("too many expressions"), "{e}");
    }

    #[test]
    fn patch_paths() {
        assert_eq!(
            pp("userName"),
            PatchPath {
                attr: ap("userName"),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            pp("name.givenName"),
            PatchPath {
                attr: aps("name", "givenName"),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            pp("emails"),
            PatchPath {
                attr: ap("emails"),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            pp("emails[type eq \"work\"]"),
            PatchPath {
                attr: ap("emails"),
                filter: Some(eq("type", "work")),
                sub: None
            }
        );
        assert_eq!(
            pp("emails[type eq \"work\"].value"),
            PatchPath {
                attr: ap("emails"),
                filter: Some(eq("type", "work")),
                sub: Some("value".into())
            }
        );
        assert_eq!(
            pp("addresses[type eq \"work\" and primary eq true].streetAddress"),
            PatchPath {
                attr: ap("addresses"),
                filter: Some(and(
                    eq("type", "work"),
                    cmp(ap("primary"), CompareOp::Eq, CompValue::Bool(true))
                )),
                sub: Some("streetAddress".into())
            }
        );
        assert_eq!(
            pp("members[value eq \"2819c223\"]"),
            PatchPath {
                attr: ap("members"),
                filter: Some(eq("value", "2819c223")),
                sub: None
            }
        );
        assert_eq!(
            pp(&format!("{ENT}:department")),
            PatchPath {
                attr: apu(ENT, "department", None),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            pp(&format!("{ENT}:manager")),
            PatchPath {
                attr: apu(ENT, "manager", None),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            pp(&format!("{ENT}:manager.value")),
            PatchPath {
                attr: apu(ENT, "manager", Some("value")),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            pp(&format!("{ENT}:manager[value eq \"x\"]")),
            PatchPath {
                attr: apu(ENT, "manager", None),
                filter: Some(eq("value", "x")),
                sub: None
            }
        );
        assert_eq!(
            pp(&format!("{CORE}:name.familyName")),
            PatchPath {
                attr: apu(CORE, "name", Some("familyName")),
                filter: None,
                sub: None
            }
        );
        assert_eq!(
            pp(" members "),
            PatchPath {
                attr: ap("members"),
                filter: None,
                sub: None
            }
        );
        assert_eq!(pp("members.$ref").attr, aps("members", "$ref"));
    }

    #[test]
    fn patch_path_errors() {
        let e = pperr("");
        assert_eq!(e.message, "empty path");
        assert_eq!(pperr("  ").message, "empty path");
        let e = pperr("userName eq \"x\"");
        assert_eq!(e.position, 9);
        assert!(
            e.message
                .starts_with("expected end of path after \"userName\""),
            "{e}"
        );
        let e = pperr("emails[type eq \"work\"] x");
        assert!(e.message.starts_with("expected end of path"), "{e}");
        let e = pperr("name.givenName.x");
        assert!(e.message.starts_with("expected end of path"), "{e}");
        let e = pperr("emails[type eq \"work\"");
        assert!(e.message.starts_with("unterminated value filter"), "{e}");
        let e = pperr("emails[type eq \"work\"].");
        assert!(e.message.starts_with("expected sub-attribute name"), "{e}");
        let e = pperr("emails[type eq \"work\"].value.x");
        assert!(e.message.starts_with("expected end of path"), "{e}");
        let e = pperr("123");
        assert!(e.message.starts_with("expected attribute path"), "{e}");
        let e = pperr("emails[]");
        assert!(e.message.contains("after '['"), "{e}");
        let e = pperr("emails[addresses[type pr]]");
        assert_eq!(e.message, "nested value filters are not allowed");
        let e = pperr("name.givenName[value pr]");
        assert!(e.message.contains("cannot follow sub-attribute"), "{e}");
        let e = pperr("urn:ietf:params:scim:schemas:extension:enterprise:2.0");
        assert!(
            e.message
                .starts_with("expected attribute name after schema URN"),
            "{e}"
        );
    }

    #[test]
    fn display_attr_path() {
        assert_eq!(ap("userName").to_string(), "userName");
        assert_eq!(aps("name", "givenName").to_string(), "name.givenName");
        assert_eq!(
            apu(ENT, "manager", Some("value")).to_string(),
            format!("{ENT}:manager.value")
        );
        for text in [
            "userName",
            "name.givenName",
            "members.$ref",
            &format!("{ENT}:manager.value"),
            &format!("{CORE}:emails"),
        ] {
            assert_eq!(pp(text).attr.to_string(), text);
        }
    }

    #[test]
    fn never_panics_on_mutations() {
        let seeds = [
            "userName eq \"bjensen\"",
            "title pr and userType eq \"Employee\"",
            "userType ne \"Employee\" and not (emails co \"example.com\" or emails.value co \"example.org\")",
            "emails[type eq \"work\" and value co \"@example.com\"] or ims[type eq \"xmpp\"]",
            "emails[type eq \"work\"].value eq \"a@b.c\"",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"x\"",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager[value eq \"x\"]",
            "n ge -2.5E-3 and ok eq TRUE or z eq null",
            "x eq \"Zoë \\u00e9 日本\\\"\" and members[$ref pr]",
            "emails[type eq \"work\"].value",
            "name.givenName",
        ];
        let inserts = ['(', ')', '[', ']', '"', '\\', ' ', '.', ':', 'é'];
        let mut count = 0usize;
        for seed in seeds {
            let boundaries: Vec<usize> = seed
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(seed.len()))
                .collect();
            for &i in &boundaries {
                let prefix = &seed[..i];
                let suffix = &seed[i..];
                let _ = parse_filter(prefix);
                let _ = parse_path(prefix);
                let _ = parse_filter(suffix);
                let _ = parse_path(suffix);
                count += 4;
                for c in inserts {
                    let mutated = format!("{prefix}{c}{suffix}");
                    let _ = parse_filter(&mutated);
                    let _ = parse_path(&mutated);
                    count += 2;
                }
            }
            // Delete each character.
            for w in boundaries.windows(2) {
                let mutated = format!("{}{}", &seed[..w[0]], &seed[w[1]..]);
                let _ = parse_filter(&mutated);
                let _ = parse_path(&mutated);
                count += 2;
            }
        }
        assert!(count > 5000, "only {count} inputs exercised");
        // Valid seeds still parse and error positions always lie inside the input.
        for seed in &seeds[..9] {
            assert!(parse_filter(seed).is_ok(), "{seed}");
        }
        for input in [
            "é",
            "é eq \"x\"",
            "a eq é",
            "a eq \"é",
            "a[é",
            "\u{0}",
            "a eq \"\u{1}\"",
        ] {
            let e = perr(input);
            assert!(e.position <= input.len(), "{input}: {e}");
            assert!(input.is_char_boundary(e.position), "{input}: {e}");
        }
    }

    #[test]
    fn display_filter() {
        for (ast, text) in [
            (eq("userName", "bjensen"), r#"userName eq "bjensen""#),
            (
                and(Filter::Present(ap("title")), or(eq("a", "1"), eq("b", "2"))),
                r#"title pr and (a eq "1" or b eq "2")"#,
            ),
            (
                or(and(eq("a", "1"), eq("b", "2")), eq("c", "3")),
                r#"a eq "1" and b eq "2" or c eq "3""#,
            ),
            (
                and(eq("a", "1"), and(eq("b", "2"), eq("c", "3"))),
                r#"a eq "1" and (b eq "2" and c eq "3")"#,
            ),
            (
                not(vp("emails", eq("type", "work"))),
                r#"not (emails[type eq "work"])"#,
            ),
            (
                cmp(
                    apu(ENT, "manager", Some("value")),
                    CompareOp::Ne,
                    CompValue::Null,
                ),
                &format!("{ENT}:manager.value ne null"),
            ),
            (
                cmp(ap("x"), CompareOp::Co, s("q\"b\\s\u{0}\u{1f}\n\té")),
                r#"x co "q\"b\\s\u0000\u001f\n\té""#,
            ),
        ] {
            assert_eq!(ast.to_string(), text);
            assert_eq!(pf(text), ast, "{text}");
        }
        // Entra's sub-attribute form prints as the value filter it is parsed into.
        let entra = pf(r#"emails[type eq "work"].value eq "a@b.c""#);
        assert_eq!(
            entra.to_string(),
            r#"emails[type eq "work" and value eq "a@b.c"]"#
        );
    }

    /// Generators of filter ASTs for the round-trip property.
    mod arbitrary {
        use super::*;
        use proptest::prelude::*;

        /// RFC 7643 ATTRNAME (with the `$ref` style prefix), and names that collide with keywords.
        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => "\\$?[A-Za-z][A-Za-z0-9_-]{0,8}",
                1 => prop::sample::select(vec![
                    "not", "NOT", "not-before", "not_x", "and", "or", "pr", "eq", "true",
                    "null", "urn", "$ref",
                ])
                .prop_map(String::from),
            ]
        }

        fn urn() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![ENT, CORE]).prop_map(String::from),
                "[uU][rR][nN]:[A-Za-z0-9._$-]{0,8}(:[A-Za-z0-9._$-]{1,8}){0,3}",
            ]
        }

        /// Value filters (`emails[...]`) allow no schema URN.
        fn path(with_urn: bool, with_sub: bool) -> impl Strategy<Value = AttrPath> {
            let urn = if with_urn {
                prop::option::weighted(0.3, urn()).boxed()
            } else {
                Just(None).boxed()
            };
            let sub = if with_sub {
                prop::option::of(name()).boxed()
            } else {
                Just(None).boxed()
            };
            (urn, name(), sub).prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
        }

        /// Any Unicode text, rich in what JSON escapes.
        fn text() -> impl Strategy<Value = String> {
            let special = prop::sample::select(vec![
                '"',
                '\\',
                '/',
                '\0',
                '\n',
                '\r',
                '\t',
                '\u{8}',
                '\u{c}',
                '\u{1f}',
                '\u{7f}',
                ' ',
                '(',
                ')',
                '[',
                ']',
                'é',
                '日',
                '\u{2028}',
                '\u{10ffff}',
            ]);
            prop::collection::vec(prop_oneof![special, any::<char>()], 0..16)
                .prop_map(|chars| chars.into_iter().collect())
        }

        fn value() -> impl Strategy<Value = CompValue> {
            prop_oneof![
                4 => text().prop_map(CompValue::Str),
                1 => any::<bool>().prop_map(CompValue::Bool),
                1 => Just(CompValue::Null),
                1 => any::<i64>().prop_map(|n| CompValue::Number(n.into())),
                1 => any::<u64>().prop_map(|n| CompValue::Number(n.into())),
                1 => any::<f64>()
                    .prop_filter_map("JSON has no NaN or infinity", serde_json::Number::from_f64)
                    .prop_map(CompValue::Number),
            ]
        }

        fn op() -> impl Strategy<Value = CompareOp> {
            prop::sample::select(vec![
                CompareOp::Eq,
                CompareOp::Ne,
                CompareOp::Co,
                CompareOp::Sw,
                CompareOp::Ew,
                CompareOp::Gt,
                CompareOp::Ge,
                CompareOp::Lt,
                CompareOp::Le,
            ])
        }

        fn attr_exp(with_urn: bool) -> BoxedStrategy<Filter> {
            prop_oneof![
                path(with_urn, true).prop_map(Filter::Present),
                (path(with_urn, true), op(), value())
                    .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
            ]
            .boxed()
        }

        /// `and`, `or` and `not` over `leaf`, at most `depth` levels deep.
        fn logical(leaf: BoxedStrategy<Filter>, depth: u32) -> BoxedStrategy<Filter> {
            leaf.prop_recursive(depth, 16, 2, |inner| {
                prop_oneof![
                    (inner.clone(), inner.clone())
                        .prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                    (inner.clone(), inner.clone())
                        .prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                    inner.prop_map(|a| Filter::Not(Box::new(a))),
                ]
            })
            .boxed()
        }

        /// Every AST `parse_filter` can produce: value paths only at the top level, no URN inside them.
        pub(super) fn filter() -> BoxedStrategy<Filter> {
            let value_path =
                (path(true, false), logical(attr_exp(false), 2)).prop_map(|(attr, filter)| {
                    Filter::ValuePath {
                        attr,
                        filter: Box::new(filter),
                    }
                });
            logical(prop_oneof![3 => attr_exp(true), 1 => value_path].boxed(), 4)
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            // A failure prints its shrunk input; found cases become named unit tests.
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        #[test]
        fn printed_filters_parse_back_to_the_same_ast(filter in arbitrary::filter()) {
            let text = filter.to_string();
            match parse_filter(&text) {
                Ok(parsed) => proptest::prop_assert_eq!(parsed, filter, "printed as {}", text),
                Err(e) => proptest::prop_assert!(false, "{text:?} does not parse: {e}"),
            }
        }
    }
}
