//! Why an edge failed, with one list of stable metric labels per edge.

use std::fmt;

/// Declares an error-kind enum, its `ALL` list and its labels from a single list, so that the
/// kinds an error can have and the metric series pre-created for them cannot disagree.
macro_rules! error_kinds {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every kind, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable snake_case metric label.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

error_kinds! {
    /// The kinds of [`SourceError`]: the `kind` label of `weir_source_errors_total`.
    pub enum SourceErrorKind {
        /// No answer within the step timeout.
        Timeout => "timeout",
        /// The source could not be reached.
        Unreachable => "unreachable",
        /// The source answered with something unusable.
        BadResponse => "bad_response",
        /// Anything else.
        Other => "other",
    }
}

error_kinds! {
    /// The kinds of [`ActuatorError`]: the `kind` label of `weir_actuation_errors_total`.
    pub enum ActuatorErrorKind {
        /// No answer within the step timeout.
        Timeout => "timeout",
        /// The target could not be reached.
        Unreachable => "unreachable",
        /// The target answered with something unusable.
        BadResponse => "bad_response",
        /// Someone else changed the target concurrently.
        Conflict => "conflict",
        /// The target refused the change, or what the configuration names is not there.
        Rejected => "rejected",
        /// Anything else.
        Other => "other",
    }
}

/// Why an observation could not be made. [`SourceError::kind`] is a stable metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// No answer within the step timeout.
    #[error("timed out after {after_s:.1}s")]
    Timeout {
        /// The timeout that expired, seconds.
        after_s: f64,
    },
    /// The source could not be reached (connection refused, DNS, TLS).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The source answered with something unusable (HTTP error, bad JSON, query error).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl SourceError {
    /// Its kind.
    pub fn error_kind(&self) -> SourceErrorKind {
        match self {
            SourceError::Timeout { .. } => SourceErrorKind::Timeout,
            SourceError::Unreachable(_) => SourceErrorKind::Unreachable,
            SourceError::BadResponse(_) => SourceErrorKind::BadResponse,
            SourceError::Other(_) => SourceErrorKind::Other,
        }
    }

    /// Stable snake_case label for `weir_source_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }
}

/// Why weights could not be applied (or read, or planned). [`ActuatorError::kind`] is a
/// stable metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActuatorError {
    /// No answer within the step timeout.
    #[error("timed out after {after_s:.1}s")]
    Timeout {
        /// The timeout that expired, seconds.
        after_s: f64,
    },
    /// The target could not be reached (API server, HAProxy runtime socket).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The target answered with something unusable.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// Someone else changed the object concurrently (e.g. a stale `resourceVersion`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The target refused the change (validation, RBAC, a route Weir does not own).
    #[error("rejected: {0}")]
    Rejected(String),
    /// What the configuration names — an object, a route, a server — is not there, or not
    /// shaped as configured; nothing was written. Counted under the `rejected` label like any
    /// refusal; kept apart so that a caller can say "not found" (the operator's
    /// `RouteNotFound` condition) rather than "refused".
    #[error("rejected: {0}")]
    TargetMissing(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ActuatorError {
    /// Its kind.
    pub fn error_kind(&self) -> ActuatorErrorKind {
        match self {
            ActuatorError::Timeout { .. } => ActuatorErrorKind::Timeout,
            ActuatorError::Unreachable(_) => ActuatorErrorKind::Unreachable,
            ActuatorError::BadResponse(_) => ActuatorErrorKind::BadResponse,
            ActuatorError::Conflict(_) => ActuatorErrorKind::Conflict,
            ActuatorError::Rejected(_) | ActuatorError::TargetMissing(_) => {
                ActuatorErrorKind::Rejected
            }
            ActuatorError::Other(_) => ActuatorErrorKind::Other,
        }
    }

    /// Stable snake_case label for `weir_actuation_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    /// What went wrong, in the target's words, without the kind's prefix
    /// (`VirtualService shop/mysql not found` rather than `rejected: ...`).
    pub fn detail(&self) -> String {
        match self {
            ActuatorError::Timeout { .. } => self.to_string(),
            ActuatorError::Unreachable(m)
            | ActuatorError::BadResponse(m)
            | ActuatorError::Conflict(m)
            | ActuatorError::Rejected(m)
            | ActuatorError::TargetMissing(m)
            | ActuatorError::Other(m) => m.clone(),
        }
    }
}

/// `e` and the errors under it, `: `-separated, each said once. An edge client's error (a
/// Kubernetes or HTTP client's) often repeats its first cause in its own message while the
/// deeper ones (the refused connection) only show through `source`: this says each once.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that says `text` and has `cause` under it.
    #[derive(Debug)]
    struct Chained(&'static str, Option<Box<Chained>>);
    impl std::fmt::Display for Chained {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Chained {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn a_chain_says_each_cause_once() {
        let refused = Chained("connection refused", None);
        let connect = Chained("tcp connect error", Some(Box::new(refused)));
        // The client repeats its first cause in its own message, as kube's errors do.
        let client = Chained("client error: tcp connect error", Some(Box::new(connect)));
        assert_eq!(
            with_causes(&client),
            "client error: tcp connect error: connection refused"
        );
        assert_eq!(with_causes(&Chained("alone", None)), "alone");
    }

    #[test]
    fn every_error_maps_to_a_listed_kind_and_labels_are_unique() {
        let source = [
            SourceError::Timeout { after_s: 1.0 },
            SourceError::Unreachable(String::new()),
            SourceError::BadResponse(String::new()),
            SourceError::Other(String::new()),
        ];
        let kinds: Vec<SourceErrorKind> = source.iter().map(SourceError::error_kind).collect();
        assert_eq!(kinds, SourceErrorKind::ALL);
        let actuator = [
            ActuatorError::Timeout { after_s: 1.0 },
            ActuatorError::Unreachable(String::new()),
            ActuatorError::BadResponse(String::new()),
            ActuatorError::Conflict(String::new()),
            ActuatorError::Rejected(String::new()),
            ActuatorError::Other(String::new()),
        ];
        let kinds: Vec<ActuatorErrorKind> =
            actuator.iter().map(ActuatorError::error_kind).collect();
        assert_eq!(kinds, ActuatorErrorKind::ALL);
        assert_eq!(
            ActuatorError::TargetMissing("route".into()).kind(),
            "rejected"
        );
        let mut labels: Vec<&str> = ActuatorErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ActuatorErrorKind::ALL.len());
        assert_eq!(
            SourceError::Timeout { after_s: 2.5 }.to_string(),
            "timed out after 2.5s"
        );
    }
}
