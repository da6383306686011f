//! Delivery reports served on tokio, by the task that waits for them.
//!
//! rdkafka's `ThreadedProducer` polls the main queue from a thread of its own: every
//! acknowledgement then crossed from librdkafka's broker thread to that polling thread
//! (a condition variable) and from it to the tokio worker of each waiting request (a
//! wake from outside the runtime, which goes through the shared inject queue and may
//! unpark a worker). Here librdkafka calls [`wake_on_event`] when the main queue gets
//! an event (`rd_kafka_queue_cb_event_enable`), which wakes one task; that task handles
//! every report queued, and each waiting request is then woken from a worker, through its
//! local queue. One wake from outside the runtime per burst of reports instead of a
//! thread hop and a foreign wake per request; rdkafka's own `StreamConsumer` waits on
//! its queue the same way.

use std::ffi::c_void;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::task::AtomicWaker;
use rdkafka::bindings as rdsys;
use rdkafka::producer::Producer;
use stage::Shutdown;

use super::AckProducer;

/// Reports handled between two yields to the scheduler, so a flood of reports cannot
/// hold a worker.
const REPORTS_PER_TURN: usize = 64;

/// The producer's main queue, and the waker librdkafka's callback wakes.
pub struct DeliveryReports {
    queue: *mut rdsys::rd_kafka_queue_t,
    /// Owned through `Arc::into_raw`, so the callback's opaque pointer stays valid
    /// until [`Drop`] has disabled the callback.
    waker: *const AtomicWaker,
}

// SAFETY: librdkafka's queue handles are thread-safe (its documentation: "The library
// is completely thread safe"), and `AtomicWaker` is `Send + Sync`.
unsafe impl Send for DeliveryReports {}
unsafe impl Sync for DeliveryReports {}

/// Called by librdkafka, on one of its threads and with the queue's lock held, when an
/// event is enqueued: it must not call back into librdkafka, and only wakes the task.
unsafe extern "C" fn wake_on_event(_client: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `AtomicWaker` of a live `DeliveryReports`: the callback is
    // disabled before that is freed.
    let waker = unsafe { &*(opaque as *const AtomicWaker) };
    waker.wake();
}

impl DeliveryReports {
    /// Watches `producer`'s main queue, where its delivery reports arrive. Must be
    /// dropped before the producer.
    pub fn watch(producer: &AckProducer) -> DeliveryReports {
        let waker = Arc::into_raw(Arc::new(AtomicWaker::new()));
        // SAFETY: the client is live; `rd_kafka_queue_get_main` returns a new reference,
        // released in `Drop`; the opaque pointer outlives the callback (see `waker`).
        let queue = unsafe {
            let queue = rdsys::rd_kafka_queue_get_main(producer.client().native_ptr());
            rdsys::rd_kafka_queue_cb_event_enable(queue, Some(wake_on_event), waker as *mut c_void);
            queue
        };
        DeliveryReports { queue, waker }
    }

    fn queued(&self) -> usize {
        // SAFETY: `queue` is a live reference until `Drop`.
        unsafe { rdsys::rd_kafka_queue_length(self.queue) }
    }

    /// Handles `producer`'s reports as they arrive, until `stop`; what is left then is
    /// served by the producer's `flush`.
    pub async fn serve(&self, producer: &AckProducer, stop: &Shutdown) {
        // SAFETY: `waker` is live for as long as `self`.
        let waker = unsafe { &*self.waker };
        loop {
            let queued = poll_fn(|cx| {
                // Registered before the queue is looked at, so an event enqueued in
                // between still wakes this task.
                waker.register(cx.waker());
                if self.queued() > 0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            tokio::select! {
                _ = stop.cancelled() => return,
                () = queued => {}
            }
            let mut handled = 0;
            while self.queued() > 0 {
                // One event per call (a zero timeout): a delivery report carries a
                // partition's batch of messages, each completing its publish.
                producer.poll(Duration::ZERO);
                handled += 1;
                if handled % REPORTS_PER_TURN == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

impl Drop for DeliveryReports {
    fn drop(&mut self) {
        // SAFETY: the callback is disabled before its opaque pointer is freed, and the
        // queue reference taken in `watch` is released once.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue, None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue);
            drop(Arc::from_raw(self.waker));
        }
    }
}
