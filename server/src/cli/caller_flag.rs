//! `--spiffe-id` as a global flag (DESIGN 3.9): with `--server-address` it picks which of the
//! caller's SVIDs to present, and like `--admin-socket` it may follow the subcommand. clap
//! cannot declare it global, because `entry create --spiffe-id` already names the entry's ID,
//! so the command line is rewritten before parsing: a `--spiffe-id` after any subcommand but
//! `entry create` moves to the front, where the top-level flag reads it.

use std::ffi::OsString;

/// The flag.
const FLAG: &str = "--spiffe-id";

/// Global flags that take a value, so their value is not taken for a subcommand name.
const GLOBAL_WITH_VALUE: [&str; 5] = [
    "--admin-socket",
    "--output",
    "--server-address",
    "--endpoint",
    FLAG,
];

/// `args` (with the program name first) with every `--spiffe-id ID` or `--spiffe-id=ID` that
/// follows a subcommand other than `entry create` moved right after the program name.
pub fn hoist_caller_spiffe_id(args: Vec<OsString>) -> Vec<OsString> {
    if is_entry_create(&args) {
        return args;
    }
    let Some(first_command) = command_positions(&args).first().copied() else {
        return args;
    };
    let mut front = Vec::new();
    let mut rest = Vec::new();
    let mut tokens = args.into_iter().enumerate();
    while let Some((i, token)) = tokens.next() {
        let text = token.to_str().unwrap_or_default();
        if i > first_command && text == FLAG {
            front.push(token);
            if let Some((_, value)) = tokens.next() {
                front.push(value);
            }
        } else if i > first_command && text.starts_with("--spiffe-id=") {
            front.push(token);
        } else {
            rest.push(token);
        }
    }
    let mut out = Vec::with_capacity(front.len() + rest.len());
    let mut rest = rest.into_iter();
    out.extend(rest.next());
    out.extend(front);
    out.extend(rest);
    out
}

/// The indexes of the first two positional tokens (the subcommand and its subcommand).
fn command_positions(args: &[OsString]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut i = 1;
    while i < args.len() && found.len() < 2 {
        let text = args[i].to_str().unwrap_or_default();
        if GLOBAL_WITH_VALUE.contains(&text) {
            i += 2;
            continue;
        }
        if !text.starts_with('-') {
            found.push(i);
        } else if found.len() == 1 {
            // A flag of the subcommand: what follows may be its value, not a command.
            break;
        }
        i += 1;
    }
    found
}

fn is_entry_create(args: &[OsString]) -> bool {
    let positions = command_positions(args);
    let word = |n: usize| positions.get(n).and_then(|&i| args[i].to_str());
    word(0) == Some("entry") && word(1) == Some("create")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoisted(line: &str) -> String {
        let args = line.split(' ').map(OsString::from).collect();
        let out = hoist_caller_spiffe_id(args);
        out.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_flag_moves_to_the_front_except_under_entry_create() {
        for (line, want) in [
            ("m task list --spiffe-id X", "m --spiffe-id X task list"),
            ("m task list --spiffe-id=X", "m --spiffe-id=X task list"),
            ("m --spiffe-id X task list", "m --spiffe-id X task list"),
            (
                "m --output json task show T --spiffe-id X --endpoint E",
                "m --spiffe-id X --output json task show T --endpoint E",
            ),
            ("m healthcheck --spiffe-id X", "m --spiffe-id X healthcheck"),
            (
                "m entry create --spiffe-id A --parent-id P",
                "m entry create --spiffe-id A --parent-id P",
            ),
            (
                "m --spiffe-id X entry create --spiffe-id A",
                "m --spiffe-id X entry create --spiffe-id A",
            ),
            (
                "m --admin-socket s entry create --spiffe-id A",
                "m --admin-socket s entry create --spiffe-id A",
            ),
            (
                "m entry delete E --spiffe-id X",
                "m --spiffe-id X entry delete E",
            ),
            ("m", "m"),
        ] {
            assert_eq!(hoisted(line), want, "{line}");
        }
    }
}
