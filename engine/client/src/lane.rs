//! One long-lived stream: a writer task that sends requests back to back, and a reader
//! task that hands each answer to the request waiting for it.
//!
//! The server answers the frames of a stream in the order they came, so the writer queues
//! each request's reply slot for the reader before writing the request's bytes, and the
//! reader pairs answers with slots in order, checking the ids as it goes. Anything out of
//! order is a broken server: the connection is closed and every waiting request fails.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use portvakt_wire::frame_len;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::{Answer, ClientError};

/// Requests written in one go at most (more wait for the next write).
const BATCH: usize = 64 * 1024;

/// The client closes a connection with this code when the server broke the protocol.
const PROTOCOL_VIOLATION: u32 = 1;
/// ... and with this one when a stream could not be written.
const STREAM_BROKEN: u32 = 2;

/// A request on its way to a stream.
pub(crate) struct Job {
    /// One whole frame.
    pub(crate) bytes: Bytes,
    /// The id the answer must carry (`None` for raw bytes, which carry no known id).
    pub(crate) id: Option<u32>,
    /// Where the answer goes.
    pub(crate) reply: oneshot::Sender<Result<Answer, ClientError>>,
    /// The request's in-flight slot, freed when its answer arrives.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// A request written and waiting for its answer.
struct Waiting {
    id: Option<u32>,
    reply: oneshot::Sender<Result<Answer, ClientError>>,
    _permit: OwnedSemaphorePermit,
}

/// The handle to a stream's writer.
#[derive(Debug)]
pub(crate) struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Lane {
    /// Starts the stream's two tasks.
    pub(crate) fn start(
        conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        presented: Arc<str>,
    ) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        let (waiting, answered) = mpsc::unbounded_channel();
        tokio::spawn(write(conn.clone(), send, queue, waiting, presented.clone()));
        tokio::spawn(read(conn, recv, answered, presented));
        Self { jobs }
    }

    /// Queues a request (the in-flight limit bounds the queue).
    pub(crate) fn submit(&self, job: Job) -> Result<(), ClientError> {
        self.jobs
            .send(job)
            .map_err(|_| ClientError::Closed("the stream is closed".into()))
    }
}

async fn write(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut queue: mpsc::UnboundedReceiver<Job>,
    waiting: mpsc::UnboundedSender<Waiting>,
    presented: Arc<str>,
) {
    let mut batch = BytesMut::with_capacity(BATCH);
    // Queues a job's bytes for the write and its reply slot for the reader.
    let take = |job: Job, batch: &mut BytesMut| {
        let slot = Waiting {
            id: job.id,
            reply: job.reply,
            _permit: job.permit,
        };
        match waiting.send(slot) {
            Ok(()) => batch.extend_from_slice(&job.bytes),
            // The reader has stopped: the stream is broken.
            Err(mpsc::error::SendError(slot)) => {
                let _ = slot.reply.send(Err(crate::lost(&conn, &presented)));
            }
        }
    };
    while let Some(job) = queue.recv().await {
        take(job, &mut batch);
        for round in 0..2 {
            while batch.len() < BATCH {
                let Ok(job) = queue.try_recv() else { break };
                take(job, &mut batch);
            }
            if round == 0 && batch.len() < BATCH {
                // Let the tasks about to send do so first: one write of many requests
                // costs the connection far less than many writes of one.
                tokio::task::yield_now().await;
            }
        }
        if send.write_all(&batch).await.is_err() {
            // Closing fails every request waiting on the connection's streams, and the
            // next request connects again. A connection that is closed already keeps its
            // reason (closing again would overwrite it with "closed").
            if conn.close_reason().is_none() {
                conn.close(STREAM_BROKEN.into(), b"a stream broke");
            }
            return;
        }
        batch.clear();
    }
    // Every handle is gone: the client was dropped or the connection replaced.
    let _ = send.finish();
}

async fn read(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    mut waiting: mpsc::UnboundedReceiver<Waiting>,
    presented: Arc<str>,
) {
    let mut inbox = BytesMut::with_capacity(16 * 1024);
    let failure = loop {
        match deliver(&mut inbox, &mut waiting) {
            Ok(()) => {}
            Err(e) => {
                conn.close(PROTOCOL_VIOLATION.into(), b"protocol violation");
                break e;
            }
        }
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => inbox.extend_from_slice(&chunk.bytes),
            Ok(None) => break ClientError::Closed("the server finished the stream".into()),
            // The stream broke because the connection did: say why the connection ended.
            Err(quinn::ReadError::ConnectionLost(_)) => break crate::lost(&conn, &presented),
            Err(e) => break ClientError::Closed(e.to_string()),
        }
    };
    // Nothing more will be answered on this stream: fail what waits, and what comes.
    waiting.close();
    while let Some(w) = waiting.recv().await {
        let _ = w.reply.send(Err(failure.for_another()));
    }
}

/// Hands every complete answer in `inbox` to its request.
fn deliver(
    inbox: &mut BytesMut,
    waiting: &mut mpsc::UnboundedReceiver<Waiting>,
) -> Result<(), ClientError> {
    while let Some(n) = frame_len(inbox)? {
        let frame = inbox.split_to(n).freeze();
        let Ok(w) = waiting.try_recv() else {
            return Err(ClientError::Unexpected("an answer to no request".into()));
        };
        let id = frame
            .get(5..9)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes);
        // An error frame with id 0 answers a request whose id the server could not read.
        let matches = match (w.id, id) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got || (got == 0 && is_error(&frame)),
            (Some(_), None) => false,
        };
        if !matches {
            let e = ClientError::Unexpected(format!(
                "an answer with id {id:?} where {:?} was due",
                w.id
            ));
            let _ = w.reply.send(Err(ClientError::Unexpected(e.to_string())));
            return Err(e);
        }
        let _ = w.reply.send(Ok(Answer(frame)));
    }
    Ok(())
}

fn is_error(frame: &[u8]) -> bool {
    frame.get(4) == Some(&0xff)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    fn frame(kind: u8, id: u32) -> Vec<u8> {
        let mut f = vec![0, 0, 0, 5, kind];
        f.extend_from_slice(&id.to_be_bytes());
        f
    }

    fn waiting(
        ids: &[Option<u32>],
    ) -> (
        mpsc::UnboundedReceiver<Waiting>,
        Vec<oneshot::Receiver<Result<Answer, ClientError>>>,
    ) {
        let permits = Arc::new(Semaphore::new(16));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut answers = Vec::new();
        for id in ids {
            let (reply, answer) = oneshot::channel();
            tx.send(Waiting {
                id: *id,
                reply,
                _permit: permits.clone().try_acquire_owned().unwrap(),
            })
            .unwrap_or_else(|_| unreachable!());
            answers.push(answer);
        }
        (rx, answers)
    }

    #[test]
    fn answers_go_to_their_requests_in_order() {
        let (mut rx, mut answers) = waiting(&[Some(1), Some(2), None]);
        let mut inbox = BytesMut::new();
        inbox.extend_from_slice(&frame(0x81, 1));
        inbox.extend_from_slice(&frame(0x81, 2));
        inbox.extend_from_slice(&frame(0xff, 0));
        inbox.extend_from_slice(&[0, 0]); // the start of a frame still to come
        deliver(&mut inbox, &mut rx).unwrap();
        assert_eq!(inbox.len(), 2);
        let got: Vec<Vec<u8>> = answers
            .iter_mut()
            .map(|a| a.try_recv().unwrap().unwrap().bytes().to_vec())
            .collect();
        assert_eq!(got, [frame(0x81, 1), frame(0x81, 2), frame(0xff, 0)]);
    }

    #[test]
    fn an_error_without_an_id_answers_the_request_due() {
        let (mut rx, mut answers) = waiting(&[Some(7)]);
        let mut inbox = BytesMut::from(&frame(0xff, 0)[..]);
        deliver(&mut inbox, &mut rx).unwrap();
        assert!(answers[0].try_recv().unwrap().is_ok());
    }

    #[test]
    fn an_answer_out_of_order_breaks_the_stream() {
        let (mut rx, mut answers) = waiting(&[Some(1), Some(2)]);
        let mut inbox = BytesMut::from(&frame(0x81, 2)[..]);
        let e = deliver(&mut inbox, &mut rx).unwrap_err();
        assert!(
            e.to_string().contains("id Some(2) where Some(1) was due"),
            "{e}"
        );
        assert!(matches!(
            answers[0].try_recv().unwrap(),
            Err(ClientError::Unexpected(_))
        ));
    }

    #[test]
    fn an_answer_to_nothing_breaks_the_stream() {
        let (mut rx, _) = waiting(&[]);
        let mut inbox = BytesMut::from(&frame(0x81, 1)[..]);
        assert!(matches!(
            deliver(&mut inbox, &mut rx),
            Err(ClientError::Unexpected(_))
        ));
        // A length prefix over the protocol's limit cannot be read past.
        let mut inbox = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            deliver(&mut inbox, &mut rx),
            Err(ClientError::Decode(_))
        ));
    }
}
