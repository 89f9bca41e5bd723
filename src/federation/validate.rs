//! Checks on every message a site sends, as pure functions over the
//! protocol types, and the gRPC status each rejection maps to.
//!
//! Nothing here touches coordinator state: a rejected message changes
//! nothing, so the coordinator keeps running and keeps what it accepted.
//! An unknown site id is `NOT_FOUND`: sites hold no credentials, so an
//! unknown id is a missing record, not a failed authentication.

use tonic::{Code, Status};

use super::pb;
use crate::data::{CLASS_COUNT, IMAGE_BYTES};

/// How far a soft-label row may sum away from 1.
pub const PROBABILITY_TOLERANCE: f64 = 1e-3;

/// Reason a site's message was rejected. Each maps to one gRPC code.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("unknown site id `{0}`; call Join first and use the id it returns")]
    UnknownSite(String),
    #[error("site {site} was dropped from the run: {reason}")]
    SiteDropped { site: String, reason: String },
    #[error("{what} is not accepted now: {why}")]
    WrongPhase { what: &'static str, why: String },
    #[error("shard index {index} is out of range; this run has shards 0 to {last}")]
    ShardOutOfRange { index: u32, last: u32 },
    #[error("shard {0} already has a site in this run; start each shard's site once")]
    ShardTaken(u32),
    #[error("upload stream is empty; send an UploadHeader first")]
    MissingHeader,
    #[error("upload stream must start with an UploadHeader, and only the first message may be one")]
    MisplacedHeader,
    #[error("upload id is empty; give each synthetic set a unique id")]
    EmptyUploadId,
    #[error("image byte size is {found}, expected {IMAGE_BYTES} (3 planes of 32 x 32)")]
    ImageBytes { found: u32 },
    #[error("class count is {found}, expected {CLASS_COUNT}")]
    ClassCount { found: u32 },
    #[error("upload announces {announced} images, more than the {limit} per site of this run")]
    AnnouncedTooMany { announced: u32, limit: usize },
    #[error("chunk holds {bytes} image bytes, not a whole number of {IMAGE_BYTES}-byte images")]
    ChunkBytes { bytes: usize },
    #[error("chunk holds {images} images but {found} probabilities; expected {expected}")]
    ProbabilityCount {
        images: usize,
        found: usize,
        expected: usize,
    },
    #[error("soft label of image {image} has a non-finite or negative probability")]
    BadProbability { image: usize },
    #[error("soft label of image {image} sums to {sum}, expected 1 within {PROBABILITY_TOLERANCE}")]
    ProbabilitySum { image: usize, sum: f64 },
    #[error("upload carries more images than the {announced} announced in its header")]
    MoreThanAnnounced { announced: u32 },
    #[error("upload ended after {received} of the {announced} announced images")]
    FewerThanAnnounced { announced: u32, received: usize },
    #[error("audit summary is not a JSON object: {0}")]
    AuditJson(String),
    #[error("real label histogram has {found} classes, expected {CLASS_COUNT}")]
    HistogramLength { found: usize },
    #[error("{dropped} images dropped by the audit, more than the {sampled} sampled")]
    DroppedMoreThanSampled { dropped: u32, sampled: u32 },
}

impl Rejection {
    /// Returns the gRPC status code this rejection is sent with.
    pub fn code(&self) -> Code {
        use Rejection::*;
        match self {
            UnknownSite(_) => Code::NotFound,
            SiteDropped { .. } | WrongPhase { .. } => Code::FailedPrecondition,
            ShardTaken(_) => Code::AlreadyExists,
            MoreThanAnnounced { .. } => Code::OutOfRange,
            ShardOutOfRange { .. }
            | MissingHeader
            | MisplacedHeader
            | EmptyUploadId
            | ImageBytes { .. }
            | ClassCount { .. }
            | AnnouncedTooMany { .. }
            | ChunkBytes { .. }
            | ProbabilityCount { .. }
            | BadProbability { .. }
            | ProbabilitySum { .. }
            | FewerThanAnnounced { .. }
            | AuditJson(_)
            | HistogramLength { .. }
            | DroppedMoreThanSampled { .. } => Code::InvalidArgument,
        }
    }
}

impl From<Rejection> for Status {
    fn from(rejection: Rejection) -> Status {
        Status::new(rejection.code(), rejection.to_string())
    }
}

/// Checks an upload header against the fixed image format and the plan's
/// per-site sample count.
pub fn check_header(header: &pb::UploadHeader, max_images: usize) -> Result<(), Rejection> {
    if header.upload_id.trim().is_empty() {
        return Err(Rejection::EmptyUploadId);
    }
    if header.image_bytes as usize != IMAGE_BYTES {
        return Err(Rejection::ImageBytes {
            found: header.image_bytes,
        });
    }
    if header.class_count as usize != CLASS_COUNT {
        return Err(Rejection::ClassCount {
            found: header.class_count,
        });
    }
    if header.image_count as usize > max_images {
        return Err(Rejection::AnnouncedTooMany {
            announced: header.image_count,
            limit: max_images,
        });
    }
    Ok(())
}

/// Checks one chunk given the images already received under `announced`,
/// and returns how many images it carries.
pub fn check_chunk(
    chunk: &pb::UploadChunk,
    received: usize,
    announced: u32,
) -> Result<usize, Rejection> {
    if !chunk.images.len().is_multiple_of(IMAGE_BYTES) {
        return Err(Rejection::ChunkBytes {
            bytes: chunk.images.len(),
        });
    }
    let images = chunk.images.len() / IMAGE_BYTES;
    let expected = images * CLASS_COUNT;
    if chunk.probabilities.len() != expected {
        return Err(Rejection::ProbabilityCount {
            images,
            found: chunk.probabilities.len(),
            expected,
        });
    }
    if received + images > announced as usize {
        return Err(Rejection::MoreThanAnnounced { announced });
    }
    check_probabilities(&chunk.probabilities, received)?;
    Ok(images)
}

/// Checks that every row of `CLASS_COUNT` probabilities is finite,
/// non-negative and sums to 1; `first_image` numbers the rows in errors.
pub fn check_probabilities(probabilities: &[f32], first_image: usize) -> Result<(), Rejection> {
    for (row, label) in probabilities.chunks(CLASS_COUNT).enumerate() {
        let image = first_image + row;
        if label.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err(Rejection::BadProbability { image });
        }
        let sum: f64 = label.iter().map(|&p| f64::from(p)).sum();
        if (sum - 1.0).abs() > PROBABILITY_TOLERANCE {
            return Err(Rejection::ProbabilitySum { image, sum });
        }
    }
    Ok(())
}

/// Checks that a finished stream delivered every announced image.
pub fn check_complete(received: usize, announced: u32) -> Result<(), Rejection> {
    if received != announced as usize {
        return Err(Rejection::FewerThanAnnounced {
            announced,
            received,
        });
    }
    Ok(())
}

/// Checks an audit submission and parses its summary, `None` when empty.
pub fn check_audit(
    submission: &pb::AuditSubmission,
) -> Result<Option<serde_json::Value>, Rejection> {
    if submission.real_label_histogram.len() != CLASS_COUNT {
        return Err(Rejection::HistogramLength {
            found: submission.real_label_histogram.len(),
        });
    }
    if submission.images_dropped_by_audit > submission.images_sampled {
        return Err(Rejection::DroppedMoreThanSampled {
            dropped: submission.images_dropped_by_audit,
            sampled: submission.images_sampled,
        });
    }
    if submission.summary_json.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(&submission.summary_json) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(Some(value)),
        Ok(_) => Err(Rejection::AuditJson(
            "found a JSON value of another kind".into(),
        )),
        Err(err) => Err(Rejection::AuditJson(err.to_string())),
    }
}

/// The images and soft labels of one upload stream, checked chunk by chunk
/// and committed only once the stream is complete.
#[derive(Debug)]
pub struct UploadBuffer {
    pub header: pb::UploadHeader,
    pub images: Vec<u8>,
    pub probabilities: Vec<f32>,
    /// Bytes received on the wire for images and labels.
    pub bytes: u64,
}

impl UploadBuffer {
    /// Starts a buffer for a checked header.
    pub fn new(header: pb::UploadHeader, max_images: usize) -> Result<UploadBuffer, Rejection> {
        check_header(&header, max_images)?;
        let count = header.image_count as usize;
        Ok(UploadBuffer {
            images: Vec::with_capacity(count * IMAGE_BYTES),
            probabilities: Vec::with_capacity(count * CLASS_COUNT),
            header,
            bytes: 0,
        })
    }

    /// Images received so far.
    pub fn received(&self) -> usize {
        self.images.len() / IMAGE_BYTES
    }

    /// Checks and appends one chunk.
    pub fn push(&mut self, chunk: pb::UploadChunk) -> Result<(), Rejection> {
        check_chunk(&chunk, self.received(), self.header.image_count)?;
        self.bytes += (chunk.images.len() + 4 * chunk.probabilities.len()) as u64;
        self.images.extend_from_slice(&chunk.images);
        self.probabilities.extend_from_slice(&chunk.probabilities);
        Ok(())
    }

    /// Checks that the stream delivered what its header announced.
    pub fn finish(self) -> Result<UploadBuffer, Rejection> {
        check_complete(self.received(), self.header.image_count)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(count: u32) -> pb::UploadHeader {
        pb::UploadHeader {
            site_id: "site-0".into(),
            upload_id: "upload-1".into(),
            image_count: count,
            image_bytes: IMAGE_BYTES as u32,
            class_count: CLASS_COUNT as u32,
        }
    }

    fn uniform_chunk(images: usize) -> pb::UploadChunk {
        pb::UploadChunk {
            images: vec![7; images * IMAGE_BYTES],
            probabilities: vec![0.1; images * CLASS_COUNT],
        }
    }

    #[test]
    fn accepts_a_well_formed_upload() {
        let mut buffer = UploadBuffer::new(header(3), 10).unwrap();
        buffer.push(uniform_chunk(2)).unwrap();
        buffer.push(uniform_chunk(1)).unwrap();
        let buffer = buffer.finish().unwrap();
        assert_eq!(buffer.received(), 3);
        assert_eq!(buffer.bytes, (3 * IMAGE_BYTES + 4 * 3 * CLASS_COUNT) as u64);
    }

    #[test]
    fn rejects_bad_headers_as_invalid_argument() {
        let mut wrong_bytes = header(1);
        wrong_bytes.image_bytes = 3000;
        let mut wrong_classes = header(1);
        wrong_classes.class_count = 100;
        let mut no_id = header(1);
        no_id.upload_id = " ".into();
        let cases = [
            (wrong_bytes, Rejection::ImageBytes { found: 3000 }),
            (wrong_classes, Rejection::ClassCount { found: 100 }),
            (no_id, Rejection::EmptyUploadId),
            (
                header(11),
                Rejection::AnnouncedTooMany {
                    announced: 11,
                    limit: 10,
                },
            ),
        ];
        for (header, expected) in cases {
            let err = check_header(&header, 10).unwrap_err();
            assert_eq!(err, expected);
            assert_eq!(err.code(), Code::InvalidArgument);
        }
    }

    #[test]
    fn rejects_a_chunk_with_a_partial_image() {
        let chunk = pb::UploadChunk {
            images: vec![0; IMAGE_BYTES + 5],
            probabilities: vec![0.1; CLASS_COUNT],
        };
        let err = check_chunk(&chunk, 0, 4).unwrap_err();
        assert_eq!(
            err,
            Rejection::ChunkBytes {
                bytes: IMAGE_BYTES + 5
            }
        );
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn rejects_chunk_label_count_mismatch() {
        let mut chunk = uniform_chunk(2);
        chunk.probabilities.truncate(CLASS_COUNT);
        let err = check_chunk(&chunk, 0, 4).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(matches!(err, Rejection::ProbabilityCount { found: 10, .. }));
    }

    #[test]
    fn rejects_non_finite_and_negative_probabilities() {
        for bad in [f32::NAN, f32::INFINITY, -0.1] {
            let mut chunk = uniform_chunk(2);
            chunk.probabilities[CLASS_COUNT + 3] = bad;
            let err = check_chunk(&chunk, 5, 10).unwrap_err();
            assert_eq!(err, Rejection::BadProbability { image: 6 }, "value {bad}");
            assert_eq!(err.code(), Code::InvalidArgument);
        }
    }

    #[test]
    fn rejects_probabilities_that_do_not_sum_to_one() {
        let mut chunk = uniform_chunk(1);
        chunk.probabilities[0] = 0.2;
        let err = check_chunk(&chunk, 0, 1).unwrap_err();
        assert!(matches!(err, Rejection::ProbabilitySum { image: 0, .. }));
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn accepts_sums_within_the_tolerance() {
        let mut probabilities = vec![0.1f32; CLASS_COUNT];
        probabilities[0] += 0.0005;
        assert!(check_probabilities(&probabilities, 0).is_ok());
    }

    #[test]
    fn rejects_extra_images_as_out_of_range() {
        let mut buffer = UploadBuffer::new(header(2), 10).unwrap();
        buffer.push(uniform_chunk(2)).unwrap();
        let err = buffer.push(uniform_chunk(1)).unwrap_err();
        assert_eq!(err, Rejection::MoreThanAnnounced { announced: 2 });
        assert_eq!(err.code(), Code::OutOfRange);
        assert_eq!(buffer.received(), 2, "a rejected chunk must add nothing");
    }

    #[test]
    fn rejects_a_stream_that_ends_early() {
        let mut buffer = UploadBuffer::new(header(3), 10).unwrap();
        buffer.push(uniform_chunk(1)).unwrap();
        let err = buffer.finish().unwrap_err();
        assert_eq!(
            err,
            Rejection::FewerThanAnnounced {
                announced: 3,
                received: 1
            }
        );
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn maps_state_rejections_to_their_codes() {
        let unknown = Rejection::UnknownSite("ghost".into());
        let late = Rejection::WrongPhase {
            what: "upload",
            why: "its phase is over".into(),
        };
        assert_eq!(unknown.code(), Code::NotFound);
        assert_eq!(late.code(), Code::FailedPrecondition);
        assert_eq!(Rejection::ShardTaken(1).code(), Code::AlreadyExists);
        let status = Status::from(unknown);
        assert!(status.message().contains("ghost"), "{}", status.message());
    }

    fn audit(summary: &str) -> pb::AuditSubmission {
        pb::AuditSubmission {
            site_id: "site-0".into(),
            summary_json: summary.into(),
            real_label_histogram: vec![3; CLASS_COUNT],
            images_sampled: 10,
            images_dropped_by_audit: 2,
        }
    }

    #[test]
    fn parses_an_audit_summary_object() {
        let parsed = check_audit(&audit(r#"{"flagged_count": 2}"#)).unwrap();
        assert_eq!(parsed.unwrap()["flagged_count"], 2);
        assert_eq!(check_audit(&audit("")).unwrap(), None);
    }

    #[test]
    fn rejects_malformed_audit_submissions() {
        let mut short = audit("{}");
        short.real_label_histogram.pop();
        let mut over = audit("{}");
        over.images_dropped_by_audit = 11;
        for bad in [audit("[1, 2]"), audit("{not json"), short, over] {
            let err = check_audit(&bad).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        }
    }
}
