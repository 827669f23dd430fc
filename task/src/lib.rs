//! [`Task`]: a spawned tokio task that is aborted when its handle is
//! dropped, as holo's `Task` and mini-redis's drop guards. Whoever holds a
//! task owns it: dropping the owner (a speaker, a driver, a server list)
//! stops its tasks, with no abort to remember and none aimed at the wrong
//! index. A task meant to run on by itself says so with [`Task::detach`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (tx, rx) = tokio::sync::oneshot::channel::<()>();
//! let task = task::Task::spawn(async move { let _ = rx.await; });
//! drop(task); // aborted: the receiver is dropped, the sender sees it
//! tokio::task::yield_now().await;
//! assert!(tx.is_closed());
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::{JoinError, JoinHandle};

/// A spawned task, aborted when dropped. Awaiting it gives the task's
/// output (or the [`JoinError`] of a panic or abort), like its
/// [`JoinHandle`].
#[derive(Debug)]
#[must_use = "a Task is aborted when dropped"]
pub struct Task<T> {
    /// `None` only once [`Task::detach`] has taken it.
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Task<T> {
    /// Spawns `future` on the current tokio runtime.
    pub fn spawn<F>(future: F) -> Task<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        Task::from(tokio::spawn(future))
    }
}

impl<T> Task<T> {
    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Aborts the task now (dropping it does the same).
    pub fn abort(&self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }

    /// Lets the task run on by itself: its handle, no longer aborted on drop.
    pub fn detach(mut self) -> JoinHandle<T> {
        self.handle
            .take()
            .expect("only detach takes the handle, and it consumes the task")
    }
}

impl<T> From<JoinHandle<T>> for Task<T> {
    /// Owns a task spawned some other way (`spawn_blocking`, a runtime
    /// handle).
    fn from(handle: JoinHandle<T>) -> Task<T> {
        Task {
            handle: Some(handle),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let handle = self
            .handle
            .as_mut()
            .expect("only detach takes the handle, and it consumes the task");
        Pin::new(handle).poll(cx)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_dropped_task_is_aborted() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = Task::spawn(async move {
            let _ = rx.await;
        });
        assert!(!task.is_finished());
        drop(task);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(tx.is_closed(), "the task, and its receiver, are gone");
    }

    #[tokio::test(start_paused = true)]
    async fn an_awaited_task_gives_its_output() {
        let task = Task::spawn(async { 7 });
        assert_eq!(task.await.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_detached_task_runs_on() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handle = Task::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = tx.send(1);
        })
        .detach();
        assert_eq!(rx.await, Ok(1));
        handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn abort_cancels_and_awaiting_says_so() {
        let task = Task::spawn(tokio::time::sleep(Duration::from_secs(60)));
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
}
