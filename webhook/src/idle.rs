//! Closing connections that stop making calls, without a timer per request.
//!
//! hyper's `header_read_timeout` arms and disarms a timer for every request, which
//! cost 2% of the throughput in `scripts/bench-webhook-ab.sh`. Here each connection
//! has one periodic check instead: [`Watched`] notes what its calls do, and
//! [`watchdog`] returns, so that the connection is closed, once a whole period has
//! passed with no request head, no answer and no call in flight. A connection that
//! stalls (a slow head, or idle keep-alive) is closed between one and two periods
//! after its last activity, and at the first period if it never completes a head;
//! a call being answered is never cut by it (the deadline bounds calls).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};

/// What one connection's calls did since the watchdog last looked.
#[derive(Debug, Default)]
pub struct Activity {
    /// A head completed or an answer was ready since the last check.
    seen: AtomicBool,
    /// Calls whose answer is not ready yet.
    in_flight: AtomicUsize,
}

impl Activity {
    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.seen.store(true, Ordering::Relaxed);
    }

    fn answered(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.seen.store(true, Ordering::Relaxed);
    }

    /// Whether the connection did anything since the last check, or is answering
    /// a call now; starts a new period.
    fn active_since_last_check(&self) -> bool {
        let seen = self.seen.swap(false, Ordering::Relaxed);
        seen || self.in_flight.load(Ordering::Relaxed) > 0
    }
}

/// Returns at the first check, every `period` from now, that finds the connection
/// inactive for the whole period before it.
pub async fn watchdog(activity: &Activity, period: Duration) {
    let mut checks = interval_at(Instant::now() + period, period);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        checks.tick().await;
        if !activity.active_since_last_check() {
            return;
        }
    }
}

/// A connection's service, noting each call for the connection's [`watchdog`]:
/// hyper calls the service once a request head is whole, and the call is in flight
/// until its answer is ready.
#[derive(Clone)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// The service, and the activity its calls report.
    pub fn new(inner: S) -> (Self, Arc<Activity>) {
        let activity = Arc::new(Activity::default());
        let watched = Watched {
            inner,
            activity: activity.clone(),
        };
        (watched, activity)
    }
}

impl<S: hyper::service::Service<R>, R> hyper::service::Service<R> for Watched<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = Answering<S::Future>;

    fn call(&self, request: R) -> Self::Future {
        self.activity.started();
        Answering {
            future: self.inner.call(request),
            in_flight: Some(InFlight(self.activity.clone())),
        }
    }
}

/// Counts a call as in flight while it lives: a call dropped unanswered (its
/// connection closing) stops counting too.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answered();
    }
}

pin_project_lite::pin_project! {
    /// A call's answer, in flight until it is ready.
    pub struct Answering<F> {
        #[pin]
        future: F,
        in_flight: Option<InFlight>,
    }
}

impl<F: Future> Future for Answering<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = ready!(this.future.poll(cx));
        this.in_flight.take();
        Poll::Ready(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_inactive_only_after_a_whole_period_of_nothing() {
        let activity = Activity::default();
        assert!(!activity.active_since_last_check(), "never sent a head");
        activity.started();
        assert!(activity.active_since_last_check(), "a head");
        assert!(activity.active_since_last_check(), "a call in flight");
        assert!(activity.active_since_last_check(), "still in flight");
        activity.answered();
        assert!(activity.active_since_last_check(), "an answer");
        assert!(!activity.active_since_last_check(), "a period of nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_returns_at_the_first_idle_period() {
        let activity = Activity::default();
        let started = Instant::now();
        activity.started();
        activity.answered();
        watchdog(&activity, Duration::from_secs(10)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }
}
