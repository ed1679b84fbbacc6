//! The command as a template: `{path}` and `{param.NAME}` are replaced
//! inside an argument, which stays exactly one argument. No shell ever sees
//! it, and nothing is split on spaces, so a path holding `;`, quotes or
//! `$(…)` reaches the plugin verbatim.

use std::collections::BTreeSet;
use std::fmt;

use hushbox_core::{Error, Result, SecretRef};

/// One piece of an argument.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Path,
    Param(String),
}

/// The parsed `command` setting.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ArgvTemplate {
    program: String,
    args: Vec<Vec<Piece>>,
}

impl fmt::Debug for ArgvTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The manifest's own text: no value is ever in it.
        f.debug_struct("ArgvTemplate")
            .field("program", &self.program)
            .field("arguments", &self.args.len())
            .finish_non_exhaustive()
    }
}

impl ArgvTemplate {
    /// Parses the elements of `command`. `{{` and `}}` are literal braces.
    pub(crate) fn parse(command: &[String]) -> Result<Self> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| Error::config("`command` is empty: it needs at least a program"))?;
        if program.is_empty() {
            return Err(Error::config("the program, first in `command`, is empty"));
        }
        let program_pieces = parse_element(program)?;
        let [Piece::Text(program)] = program_pieces.as_slice() else {
            return Err(Error::config(
                "the program, first in `command`, cannot hold a placeholder: a reference must \
                 never choose which program runs",
            ));
        };
        Ok(Self {
            program: program.clone(),
            args: args
                .iter()
                .map(|arg| parse_element(arg))
                .collect::<Result<_>>()?,
        })
    }

    /// The program, as written (looked up on the plugin's `PATH`).
    pub(crate) fn program(&self) -> &str {
        &self.program
    }

    /// Whether any argument holds `{path}` or `{param.NAME}`.
    pub(crate) fn has_placeholders(&self) -> bool {
        self.args
            .iter()
            .flatten()
            .any(|piece| !matches!(piece, Piece::Text(_)))
    }

    /// The arguments without substitution (the JSON protocol, which has no
    /// placeholders).
    pub(crate) fn plain_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|pieces| {
                pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Text(text) => text.as_str(),
                        Piece::Path | Piece::Param(_) => "",
                    })
                    .collect()
            })
            .collect()
    }

    /// The arguments for `location`: its path and parameters substituted.
    /// Every parameter of the reference must be used by the command and
    /// every `{param.NAME}` given, so that a typo is an error, not a
    /// silently different secret.
    pub(crate) fn args_for(&self, location: &SecretRef) -> Result<Vec<String>> {
        let used: BTreeSet<&str> = self
            .args
            .iter()
            .flatten()
            .filter_map(|piece| match piece {
                Piece::Param(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if let Some(unused) = location
            .params()
            .keys()
            .find(|name| !used.contains(name.as_str()))
        {
            return Err(Error::config(format!(
                "the parameter `{unused}` is not used by this backend's command (it has no \
                 `{{param.{unused}}}`)"
            )));
        }
        let mut args = Vec::with_capacity(self.args.len());
        for pieces in &self.args {
            let mut arg = String::new();
            for piece in pieces {
                match piece {
                    Piece::Text(text) => arg.push_str(text),
                    Piece::Path => arg.push_str(location.path()),
                    Piece::Param(name) => arg.push_str(location.param(name).ok_or_else(|| {
                        Error::config(format!(
                            "this backend's command needs the parameter `{name}` (`?{name}=…`)"
                        ))
                    })?),
                }
            }
            args.push(arg);
        }
        Ok(args)
    }
}

fn parse_element(element: &str) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = element;
    while let Some(index) = rest.find(['{', '}']) {
        text.push_str(&rest[..index]);
        let brace = &rest[index..];
        if let Some(after) = brace
            .strip_prefix("{{")
            .or_else(|| brace.strip_prefix("}}"))
        {
            text.push_str(&brace[..1]);
            rest = after;
            continue;
        }
        if brace.starts_with('}') {
            return Err(Error::config(
                "a `}` in `command` closes no placeholder (write `}}` for a literal brace)",
            ));
        }
        let end = brace.find('}').ok_or_else(|| {
            Error::config("a `{` in `command` is never closed (write `{{` for a literal brace)")
        })?;
        let name = &brace[1..end];
        let piece = match name {
            "path" => Piece::Path,
            "field" => {
                return Err(Error::config(
                    "`{field}` cannot be passed to the command: the command prints the whole \
                     secret and hushbox selects `#field` from it (a JSON object)",
                ));
            }
            _ => match name.strip_prefix("param.") {
                Some(param) if valid_param_name(param) => Piece::Param(param.to_owned()),
                _ => {
                    // Named only when short and plain: a long one is more
                    // likely code (an inline script) than a typo.
                    let shown = if name.len() <= 32 && valid_param_name(name) {
                        format!("`{{{name}}}`")
                    } else {
                        "`{…}`".to_owned()
                    };
                    return Err(Error::config(format!(
                        "unknown placeholder {shown} in `command` (known: {{path}}, \
                         {{param.NAME}}; write `{{{{` and `}}}}` for literal braces)"
                    )));
                }
            },
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
        rest = &brace[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(command: &[&str]) -> Result<ArgvTemplate> {
        let command: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
        ArgvTemplate::parse(&command)
    }

    fn args(command: &[&str], reference: &str) -> Result<Vec<String>> {
        template(command)?.args_for(&reference.parse().unwrap())
    }

    #[test]
    fn placeholders_are_replaced_inside_one_argument() {
        let got = args(
            &["op", "read", "op://{path}", "--v={param.version}", "{{x}}"],
            "op://vault/item/field?version=3",
        )
        .unwrap();
        assert_eq!(got, ["read", "op://vault/item/field", "--v=3", "{x}"]);
    }

    #[test]
    fn a_path_with_shell_syntax_stays_one_argument() {
        let path = "a b 'c' \"d\"; rm -rf / $(id) `id` | x";
        let got = args(&["p", "{path}"], &format!("t://{path}")).unwrap();
        assert_eq!(got, [path]);
    }

    #[test]
    fn parameters_must_match_the_command() {
        let error = args(&["p", "{path}"], "t://x?version=2").unwrap_err();
        assert!(
            error.to_string().contains("`version` is not used"),
            "{error}"
        );
        let error = args(&["p", "{param.version}"], "t://x").unwrap_err();
        assert!(error.to_string().contains("needs the parameter `version`"));
    }

    #[test]
    fn bad_templates_are_refused() {
        for (command, says) in [
            (&[][..], "empty"),
            (&["{path}"][..], "program"),
            (&["p", "{field}"][..], "selects `#field`"),
            (&["p", "{nope}"][..], "unknown placeholder `{nope}`"),
            (&["p", "{param.}"][..], "unknown placeholder"),
            (&["p", "{path"][..], "never closed"),
            (&["p", "x}"][..], "closes no placeholder"),
        ] {
            let error = template(command).unwrap_err();
            assert!(error.to_string().contains(says), "{command:?}: {error}");
        }
    }

    #[test]
    fn empty_arguments_are_kept() {
        let got = args(&["p", "", "{path}"], "t://x").unwrap();
        assert_eq!(got, ["", "x"]);
        assert!(!template(&["p", "a"]).unwrap().has_placeholders());
    }
}
