//! A future that answers its own wake-ups by polling again in place.
//!
//! A task that wakes itself while it runs (a channel it both feeds and drains, a body it hands
//! over and then takes back) is queued again by tokio as if it had yielded: it goes to the back
//! of the run queue and another worker thread is woken for it. On a small host that is a
//! cross-thread wake-up, and the task's next step on another core, for nothing. `InPlace` gives
//! the future a waker of its own: a wake-up that comes from inside the future's own poll, on the
//! same thread, only asks for one more poll, which `InPlace` runs at once. Every other wake-up
//! (another thread, another task, the I/O driver) goes to the task's waker as before.
//!
//! Yielding still works: tokio's `yield_now` and its cooperative budget do not wake the task
//! inside its poll but defer the wake-up until the worker has polled its driver, so it comes
//! from outside the poll and reaches the scheduler (checked by the tests below).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Polls in a row before a self-waking future is handed back to the scheduler (fairness).
const MAX_POLLS_IN_PLACE: usize = 8;

thread_local! {
    /// The `Shared` whose future this thread is polling, by address (0: none).
    static POLLING: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as polling one `Shared`'s future until dropped, also when the poll panics
/// (a stale mark would swallow another future's wake-ups).
struct Polling(usize);

impl Polling {
    fn enter(id: usize) -> Self {
        Polling(POLLING.with(|p| p.replace(id)))
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING.with(|p| p.set(self.0));
    }
}

struct Shared {
    /// The task's waker, as of the last poll.
    task: Mutex<Option<Waker>>,
    /// Set by a wake-up from inside the poll.
    again: AtomicBool,
}

impl Shared {
    fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if POLLING.with(Cell::get) == self.id() {
            self.again.store(true, Ordering::Release);
            return;
        }
        let task = self.task.lock().map(|t| t.clone()).unwrap_or(None);
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// Wrap `future` so that its wake-ups from inside its own poll are answered in place.
pub fn in_place<F: Future>(future: F) -> InPlace<F> {
    let shared = Arc::new(Shared {
        task: Mutex::new(None),
        again: AtomicBool::new(false),
    });
    let waker = Waker::from(shared.clone());
    InPlace {
        future: Box::pin(future),
        shared,
        waker,
    }
}

pub struct InPlace<F> {
    future: Pin<Box<F>>,
    shared: Arc<Shared>,
    waker: Waker,
}

impl<F: Future> Future for InPlace<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if let Ok(mut task) = this.shared.task.lock() {
            match task.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *task = Some(cx.waker().clone()),
            }
        }
        let mut inner = Context::from_waker(&this.waker);
        let id = this.shared.id();
        for _ in 0..MAX_POLLS_IN_PLACE {
            this.shared.again.store(false, Ordering::Relaxed);
            let polled = {
                let _polling = Polling::enter(id);
                this.future.as_mut().poll(&mut inner)
            };
            if polled.is_ready() {
                return polled;
            }
            if !this.shared.again.swap(false, Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        // Still waking itself: let the scheduler run others first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wake-ups that reach the task.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task_waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// Pending `self_wakes` times, waking itself before each, then ready with its poll count.
    struct WakesItself {
        self_wakes: usize,
        polls: usize,
    }

    impl Future for WakesItself {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.self_wakes {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_wake_from_inside_the_poll_is_a_poll_again_not_a_task_wake() {
        let (count, waker) = task_waker();
        let mut f = in_place(WakesItself {
            self_wakes: 3,
            polls: 0,
        });
        let polled = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        assert_eq!(polled, Poll::Ready(4));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_goes_back_to_the_scheduler() {
        let (count, waker) = task_waker();
        let mut f = in_place(WakesItself {
            self_wakes: usize::MAX,
            polls: 0,
        });
        let polled = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending());
        assert_eq!(f.future.polls, MAX_POLLS_IN_PLACE);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the task was not woken to run again"
        );
    }

    /// Pending until its flag is set, keeping the waker it was given.
    struct Waits {
        done: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Waits {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.done.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn wakes_from_outside_the_poll_reach_the_task() {
        let (count, waker) = task_waker();
        let done = Arc::new(AtomicBool::new(false));
        let kept = Arc::new(Mutex::new(None));
        let mut f = in_place(Waits {
            done: done.clone(),
            waker: kept.clone(),
        });
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        let inner = kept.lock().unwrap().clone().unwrap();

        // The same thread, after the poll (another task of this worker, say).
        inner.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);

        // Another thread.
        let other = inner.clone();
        std::thread::spawn(move || other.wake()).join().unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);

        // Inside the poll of another in-place future on this thread.
        let mut g = in_place(std::future::poll_fn(|_| {
            inner.wake_by_ref();
            Poll::Ready(())
        }));
        assert!(Pin::new(&mut g).poll(&mut cx).is_ready());
        assert_eq!(count.0.load(Ordering::SeqCst), 3);

        done.store(true, Ordering::SeqCst);
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
        assert_eq!(count.0.load(Ordering::SeqCst), 3, "a poll woke the task");
    }

    #[test]
    fn a_poll_that_panics_leaves_no_mark_on_the_thread() {
        let (_, waker) = task_waker();
        let mut f = in_place(std::future::poll_fn(|_| -> Poll<()> {
            panic!("in the poll")
        }));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        }));
        assert!(caught.is_err());
        assert_eq!(POLLING.with(Cell::get), 0);
    }

    /// Spawns `yields` (in place) and then a task that sets a flag: `yields` must find the flag set
    /// once it has given way, i.e. its yield went to the scheduler, not into another poll in place.
    async fn gives_way(yields: impl Future<Output = ()> + Send + 'static) -> bool {
        let other_ran = Arc::new(AtomicBool::new(false));
        let seen = other_ran.clone();
        let first = tokio::spawn(in_place(async move {
            yields.await;
            seen.load(Ordering::SeqCst)
        }));
        let set = other_ran.clone();
        tokio::spawn(async move { set.store(true, Ordering::SeqCst) });
        tokio::time::timeout(std::time::Duration::from_secs(5), first)
            .await
            .expect("the yielding task was never woken again")
            .unwrap()
    }

    #[tokio::test]
    async fn a_yield_gives_way_to_other_tasks() {
        assert!(gives_way(tokio::task::yield_now()).await);
    }

    #[tokio::test]
    async fn an_exhausted_cooperative_budget_gives_way_to_other_tasks() {
        // More budget units than tokio grants a task per poll (128).
        assert!(
            gives_way(async {
                for _ in 0..1000 {
                    tokio::task::consume_budget().await;
                }
            })
            .await
        );
    }

    #[test]
    fn the_latest_task_waker_is_the_one_woken() {
        let (first, first_waker) = task_waker();
        let (second, second_waker) = task_waker();
        let kept = Arc::new(Mutex::new(None));
        let done = Arc::new(AtomicBool::new(false));
        let mut f = in_place(Waits {
            done,
            waker: kept.clone(),
        });
        assert!(Pin::new(&mut f)
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending());
        assert!(Pin::new(&mut f)
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending());
        kept.lock().unwrap().clone().unwrap().wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
