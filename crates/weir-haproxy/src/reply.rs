//! Parsing HAProxy's runtime API replies, and checking what goes into a command.
//!
//! Replies are plain text. HAProxy does not mark errors: a command that succeeds with nothing
//! to say (`set weight`) answers an empty line, a command that fails answers a sentence
//! (`No such server.`). So each parser here knows the shape of a good reply and treats any
//! reply that does not even start like one as HAProxy's error text
//! ([`ReplyError::Refused`]), and a reply that starts right but breaks later as
//! unparseable ([`ReplyError::Malformed`]).

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// HAProxy answered with a message instead of data: usually an error such as
    /// `No such server.` or `Permission denied`. Carries the trimmed reply.
    #[error("{0}")]
    Refused(String),
    /// The reply has the right start but is broken. Carries what is wrong.
    #[error("{0}")]
    Malformed(String),
}

/// A server's weights as `get weight` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerWeight {
    /// The weight in force now (`uweight`, what `set weight` changed).
    pub current: u32,
    /// The weight in the configuration file.
    pub initial: u32,
}

/// Parses a `get weight` reply, `"<current> (initial <initial>)\n"`.
pub fn parse_get_weight(reply: &str) -> Result<ServerWeight, ReplyError> {
    let text = reply.trim();
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(ReplyError::Refused(text.to_owned()));
    }
    let malformed = || {
        ReplyError::Malformed(format!(
            "expected `<weight> (initial <weight>)`, got `{text}`"
        ))
    };
    let (current, rest) = text.split_once(' ').ok_or_else(malformed)?;
    let initial = rest
        .trim()
        .strip_prefix("(initial ")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(malformed)?;
    Ok(ServerWeight {
        current: current.parse().map_err(|_| malformed())?,
        initial: initial.trim().parse().map_err(|_| malformed())?,
    })
}

/// Checks the reply to a command that answers nothing on success (`set weight`): any text
/// is HAProxy's error message.
pub fn expect_empty(reply: &str) -> Result<(), ReplyError> {
    let text = reply.trim();
    if text.is_empty() {
        Ok(())
    } else {
        Err(ReplyError::Refused(text.to_owned()))
    }
}

/// A server's operational state (`srv_op_state`): what health checks and traffic say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpState {
    /// 0: the server is down.
    Stopped,
    /// 1: warming up (slow start): up but throttled.
    Starting,
    /// 2: fully up.
    Running,
    /// 3: up but soft-stopping.
    Stopping,
    /// A value this version of Weir does not know.
    Other(u32),
}

impl OpState {
    fn from_code(code: u32) -> OpState {
        match code {
            0 => OpState::Stopped,
            1 => OpState::Starting,
            2 => OpState::Running,
            3 => OpState::Stopping,
            other => OpState::Other(other),
        }
    }

    /// Whether the server can take new connections as far as its health goes.
    pub fn is_up(self) -> bool {
        matches!(self, OpState::Starting | OpState::Running)
    }
}

/// A server's administrative state (`srv_admin_state`): the raw bit mask HAProxy keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdminState(pub u32);

impl AdminState {
    /// Any of the maintenance bits: forced (0x01), inherited (0x02), from the configuration
    /// (0x04), DNS resolution failure (0x20). A server in maintenance gets no traffic
    /// whatever its weight.
    pub fn in_maintenance(self) -> bool {
        self.0 & (0x01 | 0x02 | 0x04 | 0x20) != 0
    }

    /// Any of the drain bits: forced (0x08) or inherited (0x10). A draining server keeps
    /// its connections and gets no new ones.
    pub fn draining(self) -> bool {
        self.0 & (0x08 | 0x10) != 0
    }
}

/// One server row of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Backend name (`be_name`).
    pub backend: String,
    /// Server name (`srv_name`).
    pub name: String,
    /// Server address (`srv_addr`).
    pub addr: String,
    /// Operational state (`srv_op_state`).
    pub op_state: OpState,
    /// Administrative state (`srv_admin_state`).
    pub admin_state: AdminState,
    /// Weight in force now (`srv_uweight`).
    pub weight: u32,
    /// Weight from the configuration (`srv_iweight`).
    pub initial_weight: u32,
}

/// Parses `show servers state [<backend>]`.
///
/// The format is versioned: a version line (`1`), a header line starting with `#` that
/// names the columns, then one whitespace-separated row per server. Columns are found by
/// name, so added or reordered columns in later versions do not break this parser.
pub fn parse_servers_state(reply: &str) -> Result<Vec<ServerState>, ReplyError> {
    let mut lines = reply.lines().map(str::trim).filter(|l| !l.is_empty());
    let version = lines.next().unwrap_or("");
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
        return Err(ReplyError::Refused(reply.trim().to_owned()));
    }
    let header = lines
        .next()
        .and_then(|l| l.strip_prefix('#'))
        .ok_or_else(|| {
            ReplyError::Malformed(format!(
                "`show servers state` format {version}: no `#` header line after the version"
            ))
        })?;
    let columns: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &str| {
        columns.iter().position(|c| *c == name).ok_or_else(|| {
            ReplyError::Malformed(format!(
                "`show servers state` format {version}: no `{name}` column in the header"
            ))
        })
    };
    let be_name = col("be_name")?;
    let srv_name = col("srv_name")?;
    let srv_addr = col("srv_addr")?;
    let op = col("srv_op_state")?;
    let admin = col("srv_admin_state")?;
    let uweight = col("srv_uweight")?;
    let iweight = col("srv_iweight")?;

    let mut rows = Vec::new();
    for line in lines {
        if line.starts_with('#') {
            continue; // comments are allowed anywhere by the format
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |i: usize, name: &str| {
            fields.get(i).copied().ok_or_else(|| {
                ReplyError::Malformed(format!(
                    "`show servers state`: row `{line}` has no `{name}` field"
                ))
            })
        };
        let number = |i: usize, name: &str| -> Result<u32, ReplyError> {
            let text = field(i, name)?;
            text.parse().map_err(|_| {
                ReplyError::Malformed(format!(
                    "`show servers state`: `{name}` is `{text}`, not a number, in row `{line}`"
                ))
            })
        };
        rows.push(ServerState {
            backend: field(be_name, "be_name")?.to_owned(),
            name: field(srv_name, "srv_name")?.to_owned(),
            addr: field(srv_addr, "srv_addr")?.to_owned(),
            op_state: OpState::from_code(number(op, "srv_op_state")?),
            admin_state: AdminState(number(admin, "srv_admin_state")?),
            weight: number(uweight, "srv_uweight")?,
            initial_weight: number(iweight, "srv_iweight")?,
        });
    }
    Ok(rows)
}

/// Checks a backend or server name before it goes into a command.
///
/// HAProxy's identifiers are made of letters, digits, `-`, `_`, `.` and `:`; the runtime API
/// also accepts a numeric id written `#<id>`. Anything else is refused here, and must be:
/// the CLI splits commands on `;` and lines on newlines, so a name taken verbatim from a
/// config file could otherwise smuggle in a second command.
pub fn check_name(kind: &'static str, name: &str) -> Result<(), InvalidName> {
    let valid_ident = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    let valid_id = name
        .strip_prefix('#')
        .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()));
    if valid_ident || valid_id {
        Ok(())
    } else {
        Err(InvalidName {
            kind,
            name: name.to_string(),
        })
    }
}

/// A backend or server name HAProxy would not take as one identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid HAProxy {kind} name `{}`: use letters, digits, `-`, `_`, `.`, `:` or a numeric id `#<n>`",
    name.escape_debug()
)]
pub struct InvalidName {
    /// `backend` or `server`.
    pub kind: &'static str,
    /// The name as given.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from HAProxy 2.6 (Debian 12) with three servers, one changed to weight 20.
    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n2 reads 1 primary 127.0.0.1 2 0 20 1 1 1 0 2 0 0 0 0 - 19001 - 0 0 - - 0\n2 reads 2 replica-1 127.0.0.1 0 1 1 1 7 6 2 0 6 0 0 0 - 19002 - 0 0 - - 0\n2 reads 3 replica-2 10.0.0.7 2 8 0 1 1 1 0 2 0 0 0 0 - 19003 - 0 0 - - 0\n\n";

    #[test]
    fn get_weight_reply() {
        assert_eq!(
            parse_get_weight("1 (initial 1)\n\n").unwrap(),
            ServerWeight {
                current: 1,
                initial: 1
            }
        );
        assert_eq!(
            parse_get_weight("256 (initial 100)\n").unwrap(),
            ServerWeight {
                current: 256,
                initial: 100
            }
        );
    }

    #[test]
    fn get_weight_error_replies() {
        assert_eq!(
            parse_get_weight("No such server.\n\n"),
            Err(ReplyError::Refused("No such server.".into()))
        );
        assert_eq!(
            parse_get_weight("Permission denied\n"),
            Err(ReplyError::Refused("Permission denied".into()))
        );
        assert_eq!(
            parse_get_weight(""),
            Err(ReplyError::Refused(String::new()))
        );
        assert!(matches!(
            parse_get_weight("1 (initial one)"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_get_weight("1"),
            Err(ReplyError::Malformed(_))
        ));
    }

    #[test]
    fn empty_reply_is_success_and_text_is_the_error() {
        assert_eq!(expect_empty("\n"), Ok(()));
        assert_eq!(expect_empty(""), Ok(()));
        assert_eq!(
            expect_empty("Absolute weight can only be between 0 and 256 inclusive.\n\n"),
            Err(ReplyError::Refused(
                "Absolute weight can only be between 0 and 256 inclusive.".into()
            ))
        );
        assert_eq!(
            expect_empty("No such backend.\n\n"),
            Err(ReplyError::Refused("No such backend.".into()))
        );
    }

    #[test]
    fn servers_state_table() {
        let rows = parse_servers_state(STATE).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            ServerState {
                backend: "reads".into(),
                name: "primary".into(),
                addr: "127.0.0.1".into(),
                op_state: OpState::Running,
                admin_state: AdminState(0),
                weight: 20,
                initial_weight: 1,
            }
        );
        assert_eq!(rows[1].name, "replica-1");
        assert_eq!(rows[1].op_state, OpState::Stopped);
        assert!(!rows[1].op_state.is_up());
        assert!(rows[1].admin_state.in_maintenance());
        assert_eq!(rows[2].addr, "10.0.0.7");
        assert!(rows[2].admin_state.draining());
        assert!(!rows[2].admin_state.in_maintenance());
        assert_eq!(rows[2].weight, 0);
    }

    #[test]
    fn servers_state_columns_are_found_by_name() {
        let shuffled = "1\n# srv_name be_name srv_uweight srv_iweight srv_op_state srv_admin_state srv_addr new_column\n# a comment\nprimary reads 5 1 2 0 127.0.0.1 x\n";
        let rows = parse_servers_state(shuffled).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "primary");
        assert_eq!(rows[0].backend, "reads");
        assert_eq!(rows[0].weight, 5);
        assert_eq!(rows[0].initial_weight, 1);
    }

    #[test]
    fn servers_state_empty_backend_and_errors() {
        assert_eq!(
            parse_servers_state("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight\n\n").unwrap(),
            vec![]
        );
        assert_eq!(
            parse_servers_state("Can't find backend.\n\n"),
            Err(ReplyError::Refused("Can't find backend.".into()))
        );
        let e = parse_servers_state("1\n# be_id be_name srv_name\n").unwrap_err();
        assert!(e.to_string().contains("srv_addr"), "{e}");
        let e = parse_servers_state("1\n2 reads 1 primary\n").unwrap_err();
        assert!(e.to_string().contains("header"), "{e}");
        let e = parse_servers_state("1\n# be_name srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight\nreads primary 127.0.0.1 2 0 x 1\n").unwrap_err();
        assert!(e.to_string().contains("srv_uweight"), "{e}");
        let e = parse_servers_state("1\n# be_name srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight\nreads primary\n").unwrap_err();
        assert!(e.to_string().contains("srv_addr"), "{e}");
    }

    #[test]
    fn names_that_could_inject_commands_are_refused() {
        for ok in ["reads", "replica-1", "db_2.eu:a", "#3"] {
            assert!(check_name("server", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a;shutdown sessions server reads/x",
            "a\nset weight",
            "a/b",
            "#",
            "#x",
        ] {
            let e = check_name("server", bad).unwrap_err().to_string();
            assert!(e.contains("invalid HAProxy server name"), "{e}");
        }
    }
}
