use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One request exactly as it reached the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path_and_query: String,
    /// In arrival order, names as received (HTTP/1 names are lowercased by the parser).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// First value of the header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times the header `name` was sent, compared case-insensitively.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// Every request the service received, shared between the service and whoever inspects it.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Vec<RecordedRequest>>>,
    discard: bool,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder that keeps nothing, for a standalone process nobody
    /// inspects: under load a keeping one grows without bound.
    pub fn discarding() -> Self {
        Recorder {
            discard: true,
            ..Self::default()
        }
    }

    /// A snapshot; later requests do not show up in it.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        if self.discard {
            return;
        }
        self.lock().push(request);
    }

    // A panicking test thread must not hide what the service received from the others.
    fn lock(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RecordedRequest {
        RecordedRequest {
            method: "GET".into(),
            path_and_query: "/echo".into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn a_discarding_recorder_keeps_nothing_a_normal_one_keeps_all() {
        let (kept, discarded) = (Recorder::new(), Recorder::discarding());
        for _ in 0..3 {
            kept.record(request());
            discarded.record(request());
        }
        assert_eq!((kept.len(), discarded.len()), (3, 0));
    }
}
