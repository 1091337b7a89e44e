//! Kind patterns: SQLite's `GLOB`, translated to an anchored PostgreSQL regular
//! expression, so a worker's kinds select the same jobs on either store.
//!
//! `GLOB` is case-sensitive and knows three wildcards: `*` (any run of characters),
//! `?` (one character) and `[...]` (one character of a set, `[^...]` for the others,
//! `a-z` for a range, `]` first for a literal `]`). Everything else, `%` and `_`
//! included, is literal. PostgreSQL's `LIKE` differs on all of that, hence a regex
//! (`kind ~ pattern`), in which every non-alphanumeric ASCII character of the glob is
//! escaped, inside brackets too, so no glob can smuggle regex syntax in.

/// One member of a `[...]` set.
enum Member {
    One(char),
    Range(char, char),
}

/// The anchored regex matching exactly what `kind GLOB glob` matches in SQLite, or
/// `None` when the glob can match nothing (an unterminated `[`, which SQLite treats
/// as a failed match). A set is never empty: `]` right after `[` or `[^` is a member.
pub(crate) fn glob_to_regex(glob: &str) -> Option<String> {
    let mut regex = String::with_capacity(glob.len() * 2 + 2);
    regex.push('^');
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '[' => {
                // SQLite: an optional `^`, then an optional `]` taken literally, then
                // members up to the closing `]`. A `-` between two characters makes a
                // range; anywhere else it is literal, and a range's end cannot start
                // another range (`[a-c-e]` is a-c, `-` and `e`).
                let mut invert = false;
                if chars.peek() == Some(&'^') {
                    invert = true;
                    chars.next();
                }
                let mut members = Vec::new();
                if chars.peek() == Some(&']') {
                    members.push(Member::One(']'));
                    chars.next();
                }
                let mut prior: Option<char> = None;
                let mut closed = false;
                while let Some(m) = chars.next() {
                    if m == ']' {
                        closed = true;
                        break;
                    }
                    match (m, prior, chars.peek()) {
                        // The range's low end is already a member on its own (SQLite
                        // compares it before it sees the `-`), so a reversed range
                        // still matches its first character.
                        ('-', Some(low), Some(&high)) if high != ']' => {
                            chars.next();
                            if low <= high {
                                members.push(Member::Range(low, high));
                            }
                            prior = None;
                        }
                        _ => {
                            members.push(Member::One(m));
                            prior = Some(m);
                        }
                    }
                }
                if !closed {
                    return None;
                }
                regex.push('[');
                if invert {
                    regex.push('^');
                }
                for member in &members {
                    match *member {
                        Member::One(m) => push_literal(&mut regex, m),
                        Member::Range(low, high) => {
                            push_literal(&mut regex, low);
                            regex.push('-');
                            push_literal(&mut regex, high);
                        }
                    }
                }
                regex.push(']');
            }
            other => push_literal(&mut regex, other),
        }
    }
    regex.push('$');
    Some(regex)
}

/// The regexes of several globs, leaving out those that match nothing; matching any
/// of them (`kind ~ ANY($n)`) is matching any of the globs, and an empty list
/// matches no kind, as in SQLite.
pub(crate) fn globs_to_regexes(globs: &[String]) -> Vec<String> {
    globs.iter().filter_map(|g| glob_to_regex(g)).collect()
}

/// `c` as a literal in an advanced regular expression, inside or outside brackets:
/// in both places a backslash before a non-alphanumeric character means the
/// character itself.
fn push_literal(regex: &mut String, c: char) {
    if c.is_ascii() && !c.is_ascii_alphanumeric() {
        regex.push('\\');
    }
    regex.push(c);
}

#[cfg(test)]
mod tests {
    use super::glob_to_regex;

    #[test]
    fn translates_wildcards_and_escapes_the_rest() {
        assert_eq!(glob_to_regex("server.powerOn").as_deref(), Some("^server\\.powerOn$"));
        assert_eq!(glob_to_regex("server.*").as_deref(), Some("^server\\..*$"));
        assert_eq!(glob_to_regex("t.a?c").as_deref(), Some("^t\\.a.c$"));
        assert_eq!(glob_to_regex("t.a_b%").as_deref(), Some("^t\\.a\\_b\\%$"));
        assert_eq!(glob_to_regex("a[b-d]e").as_deref(), Some("^a[bb-d]e$"));
        assert_eq!(glob_to_regex("[^]x]").as_deref(), Some("^[^\\]x]$"));
        assert_eq!(glob_to_regex("[a-c-e]").as_deref(), Some("^[aa-c\\-e]$"));
        assert_eq!(glob_to_regex("[-a]").as_deref(), Some("^[\\-a]$"));
        assert_eq!(glob_to_regex("[a-]").as_deref(), Some("^[a\\-]$"));
        assert_eq!(glob_to_regex("(a|b)+{2}$").as_deref(), Some("^\\(a\\|b\\)\\+\\{2\\}\\$$"));
        assert_eq!(glob_to_regex("[[:alpha:]]").as_deref(), Some("^[\\[\\:alpha\\:]\\]$"));
        assert_eq!(glob_to_regex("[z-a]x").as_deref(), Some("^[z]x$"));
        assert_eq!(glob_to_regex("[^z-a]x").as_deref(), Some("^[^z]x$"));
        assert_eq!(glob_to_regex("abc[de"), None);
        assert_eq!(glob_to_regex("[]"), None);
        assert_eq!(glob_to_regex("").as_deref(), Some("^$"));
    }
}
