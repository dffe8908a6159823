//! Retrying failed reconciles: exponential back-off per resource (1 s, 2 s, 4 s,
//! ... up to 5 minutes), reset by a success.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error};
use crate::resource::CommerceWebhook;

pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Consecutive failures by resource.
#[derive(Default)]
pub(super) struct Backoff {
    failures: Mutex<HashMap<ObjectRef<CommerceWebhook>, u32>>,
}

impl Backoff {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<CommerceWebhook>, u32>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One more failure of `cwh`: how long to wait before the next try.
    pub(super) fn failed(&self, cwh: &CommerceWebhook) -> Duration {
        let mut failures = self.failures();
        let count = failures.entry(ObjectRef::from_obj(cwh)).or_insert(0);
        *count = count.saturating_add(1);
        Duration::from_secs(1u64 << (*count - 1).min(9)).min(MAX_BACKOFF)
    }

    pub(super) fn succeeded(&self, cwh: &CommerceWebhook) {
        self.failures().remove(&ObjectRef::from_obj(cwh));
    }
}

/// The controller's error policy: log, and retry after the resource's back-off.
pub fn error_policy(cwh: Arc<CommerceWebhook>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&cwh);
    tracing::warn!(name = %cwh.name_any(), namespace = ?cwh.namespace(), %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}
