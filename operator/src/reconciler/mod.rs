//! The reconcile loop: from a `CommerceWebhook` to applied children and a status.
//!
//! One file per job, each readable on its own:
//! * [`flow`]: one reconcile, step by step (deleted? disabled? valid? references?
//!   children, status);
//! * [`apply`]: bringing every kind of [`ChildKind::ALL`] to what the resource
//!   wants, from the caches, with guarded writes; pruning what it no longer wants;
//! * [`backoff`]: retrying failures, exponentially per resource;
//! * [`report`]: the status and the Events.
//!
//! Every reconcile is idempotent: children are server-side applied with one forced
//! field manager (a hand edit of a field we own is reverted; a no-op apply writes
//! nothing), and the status is only written when it differs. Only objects carrying
//! this resource's controller reference (its uid) are ever written or deleted: a
//! Deployment, Service, ... that merely has the same name is someone else's, and
//! the resource reports `ChildConflict` instead.

mod apply;
mod backoff;
mod flow;
mod report;
#[cfg(test)]
mod tests;

use kube::Client;
use kube::runtime::events::Recorder;
use thiserror::Error;

use crate::children::{ChildKind, Defaults};
use crate::leader::Leadership;
use crate::live::{self, Applied, ChildWriters, LiveChildren};
use crate::metrics::Metrics;
use crate::references::ReferenceError;

pub use backoff::error_policy;
pub use flow::reconcile;

pub const FIELD_MANAGER: &str = "commerce-webhook-operator";

#[derive(Debug, Error)]
pub enum Error {
    #[error("CommerceWebhook has no namespace")]
    NoNamespace,
    #[error("not the leader (the Lease was not renewed in time): nothing is written")]
    NotLeading,
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: ChildKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {kind} {name}: {source}")]
    Read {
        kind: ChildKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: ChildKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("updating status: {0}")]
    Status(#[source] kube::Error),
}

/// Declares [`ErrorKind`] from one table: each kind of error and its metric label
/// (`reconcile_failures_total{kind}`), and [`ErrorKind::ALL`], which the docs'
/// list of labels is checked against.
macro_rules! error_kinds {
    ($($kind:ident => $label:literal),* $(,)?) => {
        /// The kind of an [`Error`], as counted in metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind { $($kind),* }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind),*];

            /// The metric label.
            pub fn label(self) -> &'static str {
                match self { $(ErrorKind::$kind => $label),* }
            }
        }
    };
}

error_kinds! {
    NoNamespace => "no_namespace",
    NotLeading => "not_leading",
    Apply => "apply",
    Read => "read",
    Delete => "delete",
    Reference => "reference",
    Status => "status",
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoNamespace => ErrorKind::NoNamespace,
            Error::NotLeading => ErrorKind::NotLeading,
            Error::Apply { .. } => ErrorKind::Apply,
            Error::Read { .. } => ErrorKind::Read,
            Error::Delete { .. } => ErrorKind::Delete,
            Error::Reference(_) => ErrorKind::Reference,
            Error::Status(_) => ErrorKind::Status,
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub defaults: Defaults,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Checked before every write: a replica whose Lease lapsed writes nothing.
    leadership: Leadership,
    live: LiveChildren,
    applied: Applied,
    backoff: backoff::Backoff,
}

impl Context {
    /// The context, and the writers of its child caches that `controller::run` drives.
    pub fn new(
        client: Client,
        defaults: Defaults,
        recorder: Recorder,
        metrics: Metrics,
    ) -> (Self, ChildWriters) {
        let (live, writers) = live::caches(&defaults.pdb);
        metrics.declare_failure_kinds(ErrorKind::ALL.iter().map(|kind| kind.label()));
        let context = Context {
            client,
            defaults,
            recorder,
            metrics,
            leadership: Leadership::unconditional(),
            live,
            applied: Applied::default(),
            backoff: backoff::Backoff::default(),
        };
        (context, writers)
    }

    /// The same context, writing only while `leadership` is valid.
    pub fn with_leadership(self, leadership: Leadership) -> Self {
        Context { leadership, ..self }
    }

    fn ensure_leading(&self) -> Result<(), Error> {
        if self.leadership.is_valid() {
            Ok(())
        } else {
            Err(Error::NotLeading)
        }
    }
}
