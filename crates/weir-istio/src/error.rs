//! [`IstioError`]: everything that can go wrong between Weir's weights and the API server,
//! and how it maps onto the controller's [`ActuatorError`] kinds.

#[cfg(feature = "client")]
use weir_edge::ActuatorError;

/// Why the Istio actuator could not read or change the managed route.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IstioError {
    /// The VirtualService does not exist (HTTP 404). Nothing was written.
    #[error("VirtualService {namespace}/{name} not found")]
    VirtualServiceNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// No route matched the selector. Nothing was written.
    #[error("no {selector} in VirtualService {vs}; found {found}")]
    RouteNotFound {
        /// The selector, in words.
        selector: String,
        /// `namespace/name` of the VirtualService.
        vs: String,
        /// A summary of the routes that do exist.
        found: String,
    },
    /// Several routes matched the selector; Weir will not guess. Nothing was written.
    #[error(
        "{count} routes match {selector} in VirtualService {vs} ({paths}): make the selector unique"
    )]
    AmbiguousRoute {
        /// The selector, in words.
        selector: String,
        /// `namespace/name` of the VirtualService.
        vs: String,
        /// How many matched.
        count: usize,
        /// JSON pointers of the matching routes.
        paths: String,
    },
    /// The route's destinations are not the configured layout. Nothing was written.
    #[error("unexpected layout at {path}: expected destinations [{expected}], found [{found}]")]
    UnexpectedLayout {
        /// JSON pointer of the route.
        path: String,
        /// The configured destinations.
        expected: String,
        /// The destinations the route has.
        found: String,
    },
    /// The object is not shaped like a VirtualService (missing `spec`, a weight that is not an
    /// integer, no `resourceVersion`).
    #[error("malformed VirtualService: {0}")]
    Malformed(String),
    /// The weights to write are invalid (wrong count, over int32, zero total). Nothing was
    /// written.
    #[error("invalid weights: {0}")]
    InvalidWeights(String),
    /// The patch kept losing races with other writers.
    #[error("VirtualService {vs} changed concurrently {attempts} times in a row: {last}")]
    Conflict {
        /// `namespace/name` of the VirtualService.
        vs: String,
        /// How many patches were sent.
        attempts: u32,
        /// The API server's last message.
        last: String,
    },
    /// The API server refused the request (RBAC, admission, validation).
    #[error("API server refused ({code}): {message}")]
    Refused {
        /// HTTP status code.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// The API server answered with an error status that is neither a refusal nor a conflict.
    #[error("API server error ({code}): {message}")]
    Server {
        /// HTTP status code.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached, or its answer could not be read.
    #[error("API server unreachable: {0}")]
    Unreachable(String),
}

#[cfg(feature = "client")]
impl IstioError {
    /// Maps a kube client error to an [`IstioError`] (404, 409 and 422 are handled by the
    /// caller, which knows what was being done).
    pub(crate) fn from_kube(err: kube::Error) -> IstioError {
        match err {
            kube::Error::Api(status) => {
                let code = status.code;
                let message = if status.message.is_empty() {
                    status.reason.clone()
                } else {
                    status.message.clone()
                };
                match code {
                    400 | 401 | 403 | 405 | 415 | 422 => IstioError::Refused { code, message },
                    _ => IstioError::Server { code, message },
                }
            }
            kube::Error::SerdeError(e) => {
                IstioError::Malformed(format!("cannot decode the API server's answer: {e}"))
            }
            other => IstioError::Unreachable(other.to_string()),
        }
    }
}

#[cfg(feature = "client")]
impl From<IstioError> for ActuatorError {
    fn from(err: IstioError) -> ActuatorError {
        let text = err.to_string();
        match err {
            IstioError::VirtualServiceNotFound { .. }
            | IstioError::RouteNotFound { .. }
            | IstioError::AmbiguousRoute { .. }
            | IstioError::UnexpectedLayout { .. } => ActuatorError::TargetMissing(text),
            IstioError::Refused { .. } => ActuatorError::Rejected(text),
            IstioError::Conflict { .. } => ActuatorError::Conflict(text),
            IstioError::Malformed(_) => ActuatorError::BadResponse(text),
            IstioError::Server { code, .. } if code >= 500 || code == 429 => {
                ActuatorError::Unreachable(text)
            }
            IstioError::Server { .. } => ActuatorError::BadResponse(text),
            IstioError::Unreachable(_) => ActuatorError::Unreachable(text),
            IstioError::InvalidWeights(_) => ActuatorError::Other(text),
        }
    }
}

#[cfg(all(test, feature = "client"))]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status {
                code,
                message: message.into(),
                ..Default::default()
            }
            .boxed(),
        )
    }

    #[test]
    fn kinds_follow_the_cause() {
        let kind = |e: IstioError| ActuatorError::from(e).kind();
        assert_eq!(
            kind(IstioError::from_kube(api(403, "forbidden"))),
            "rejected"
        );
        assert_eq!(kind(IstioError::from_kube(api(503, "down"))), "unreachable");
        assert_eq!(
            kind(IstioError::from_kube(api(418, "teapot"))),
            "bad_response"
        );
        assert_eq!(
            kind(IstioError::Conflict {
                vs: "a/b".into(),
                attempts: 4,
                last: "x".into()
            }),
            "conflict"
        );
        assert_eq!(kind(IstioError::InvalidWeights("x".into())), "other");
        assert_eq!(
            kind(IstioError::VirtualServiceNotFound {
                namespace: "a".into(),
                name: "b".into()
            }),
            "rejected"
        );
    }
}
