//! What is wrong with a policy: every problem names the file, the field and the value.

use std::fmt;

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or label) the policy came from.
    pub origin: String,
    /// The field, as a path from the document root (`spec.routes[0].match[1].values`).
    pub path: String,
    /// The offending value, as written, when there is one.
    pub value: Option<String>,
    /// What is wrong, and what to do instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.path)?;
        if let Some(v) = &self.value {
            write!(f, " = {v}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one policy (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Collects problems while checking one file.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    origin: String,
    problems: Vec<Problem>,
}

impl Report {
    pub(crate) fn new(origin: &str) -> Self {
        Report {
            origin: origin.to_string(),
            problems: Vec::new(),
        }
    }

    /// Notes a problem at `path` with the offending `value`.
    pub(crate) fn add(&mut self, path: &str, value: Option<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin.clone(),
            path: path.to_string(),
            value,
            message: message.into(),
        });
    }

    /// Problems noted so far.
    pub(crate) fn count(&self) -> usize {
        self.problems.len()
    }

    /// The problems noted.
    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// `Ok(value)` when nothing was wrong.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, Problems> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(Problems(self.problems))
        }
    }
}
