use super::*;
use crate::data::IMAGE_BYTES;
use crate::privacy::stats::DcrStats;

fn evaluation(accuracy: f64) -> Evaluation {
    let mut confusion = vec![vec![0u64; 10]; 10];
    for (class, row) in confusion.iter_mut().enumerate() {
        row[class] = 40;
        row[(class + 1) % 10] = 10;
    }
    Evaluation {
        accuracy,
        per_class_accuracy: (0..10).map(|c| 0.5 + c as f64 * 0.01).collect(),
        confusion,
        count: 500,
    }
}

fn site(index: u32, status: SiteStatus) -> SiteReport {
    let mut site = SiteReport::new(format!("site-{index}"), index);
    site.status = status;
    site.real_label_histogram = vec![30; 10];
    site.synthetic_label_histogram = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 19];
    site.images_received = 64;
    site.images_dropped_by_audit = 3;
    site.bytes_received = 64 * 3072 + 64 * 40;
    site.audit = Some(audit_summary());
    site.epochs = vec![EpochRecord {
        phase: "gan".into(),
        epoch: 1,
        epochs: 1,
        losses: vec![("d_loss".into(), 0.69), ("g_loss".into(), 0.71)],
        seconds: 12.0,
        images_per_second: 50.0,
    }];
    site
}

fn audit_summary() -> AuditSummary {
    AuditSummary {
        feature_space: "pixels".into(),
        synthetic_count: 67,
        train_count: 285,
        holdout_count: 15,
        k: 5,
        nn_ratio_threshold: 0.5,
        near_duplicate_distance: 1.0,
        flagged_count: 3,
        flagged_share: 3.0 / 67.0,
        dcr: DcrStats {
            synthetic_median: 1234.5,
            synthetic_p5: 900.0,
            holdout_median: 1500.25,
            holdout_p5: 1000.0,
            synthetic_share_below_holdout_p5: 0.0625,
        },
        synthetic_nn_ratio_median: 0.9,
        holdout_nn_ratio_median: 0.88,
        holdout_false_positive_rate: 0.0,
        c_t: 1.5,
        copying_cells: 4,
        copying_cells_used: 3,
        exact_duplicates: 0,
        near_duplicates: 1,
        seconds: 0.25,
    }
}

fn sample_report() -> RunReport {
    RunReport {
        run_id: "tiny-20261204T152400Z".into(),
        status: RunStatus::Completed,
        started_at: "2026-12-04T15:24:00Z".into(),
        finished_at: "2026-12-04T15:36:05Z".into(),
        manifest: Manifest::default(),
        class_names: [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
        .map(String::from)
        .to_vec(),
        sites: vec![
            site(0, SiteStatus::Completed),
            site(
                1,
                SiteStatus::Dropped {
                    reason: "heartbeat timed out after 30 s".into(),
                },
            ),
        ],
        phases: vec![
            PhaseTiming {
                name: "join".into(),
                seconds: 1.5,
            },
            PhaseTiming {
                name: "train".into(),
                seconds: 600.0,
            },
        ],
        final_classifier: Some(evaluation(0.4321)),
        centralised: None,
        agreement: None,
        pooled_label_histogram: vec![2, 4, 6, 8, 10, 12, 14, 16, 18, 38],
    }
}

fn sample_images(count: usize) -> Vec<u8> {
    (0..count * IMAGE_BYTES).map(|i| (i % 251) as u8).collect()
}

#[test]
fn write_run_folder_writes_text_files() {
    let dir = tempfile::tempdir().unwrap();
    let report = sample_report();
    write_run_folder(dir.path(), &report, &[(0, sample_images(4))]).unwrap();
    assert!(dir.path().join(REPORT_JSON).is_file());
    assert!(dir.path().join(REPORT_MD).is_file());
    assert!(dir.path().join(MANIFEST_TOML).is_file());
}

#[test]
fn report_json_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let report = sample_report();
    write_run_folder(dir.path(), &report, &[]).unwrap();
    assert_eq!(read_report(dir.path()).unwrap(), report);
}

#[test]
fn status_serialises_with_state_tag() {
    let failed = RunStatus::Failed {
        reason: "only 1 of 2 expected sites joined within 5s".into(),
    };
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(json["state"], "failed");
    assert_eq!(
        json["reason"],
        "only 1 of 2 expected sites joined within 5s"
    );
    let completed = serde_json::to_value(SiteStatus::Completed).unwrap();
    assert_eq!(completed["state"], "completed");
}

#[test]
fn manifest_toml_parses_back_to_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = sample_report();
    report.manifest.sites.count = 3;
    write_run_folder(dir.path(), &report, &[]).unwrap();
    let again = Manifest::load(&dir.path().join(MANIFEST_TOML)).unwrap();
    assert_eq!(again, report.manifest);
}

#[test]
fn markdown_leads_with_final_accuracy() {
    let text = render_markdown(&sample_report());
    let headline = text.find("43.2%").expect("c' accuracy missing");
    let per_class = text.find("## Accuracy per class").unwrap();
    assert!(headline < per_class, "headline must come first");
    assert!(text.contains("| Status | completed |"));
    assert!(text.contains("| Wall time of the run | 12m 05s |"));
    assert!(text.contains("| Sites completed | 1 of 2 |"));
}

#[test]
fn markdown_shows_per_class_and_confusion() {
    let text = render_markdown(&sample_report());
    assert!(text.contains("| airplane | 50.0% |"));
    assert!(text.contains("| truck | 59.0% |"));
    assert!(text.contains("## Confusion matrix of c'"));
    assert!(text.contains("| cat | 0 | 0 | 0 | 40 | 10 | 0 | 0 | 0 | 0 | 0 |"));
}

#[test]
fn markdown_shows_synthetic_class_imbalance() {
    let text = render_markdown(&sample_report());
    assert!(
        text.contains("| truck | 38 | 29.7% | 60 | 10.0% |"),
        "{text}"
    );
    assert!(text.contains(
        "Synthetic: largest class truck at 29.7%, smallest class airplane at 1.6%, ratio 19.00."
    ));
    assert!(text.contains("Real: largest class airplane at 10.0%"));
}

#[test]
fn markdown_lists_sites_and_audits() {
    let text = render_markdown(&sample_report());
    assert!(text.contains("| site-0 | 0 | completed | 300 | 64 | 3 | 194.5 KiB |"));
    assert!(text.contains("dropped: heartbeat timed out after 30 s"));
    let headline = "flagged 3, share below holdout DCR p5 0.0625, C_T 1.5000, \
                    exact duplicates 0, near duplicates 1";
    assert!(text.contains(headline), "{text}");
    assert!(text.contains("| dcr.synthetic_median | 1234.5000 |"));
    assert!(text.contains("| train | 10m 00s |"));
}

#[test]
fn markdown_of_failed_run_states_reason() {
    let mut report = sample_report();
    report.status = RunStatus::Failed {
        reason: "only 1 of 2 expected sites joined within 5s".into(),
    };
    report.final_classifier = None;
    let text = render_markdown(&report);
    assert!(text.contains("**failed**: only 1 of 2 expected sites joined within 5s"));
    assert!(text.contains("| c' accuracy | not evaluated |"));
    assert!(!text.contains("## Accuracy per class"));
}

#[test]
fn centralised_baseline_updates_json_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    write_run_folder(dir.path(), &sample_report(), &[]).unwrap();
    let updated = add_centralised_baseline(dir.path(), evaluation(0.6), 0.75, 42.0).unwrap();
    let stored = read_report(dir.path()).unwrap();
    assert_eq!(stored, updated);
    assert_eq!(stored.agreement, Some(0.75));
    assert_eq!(stored.centralised.as_ref().map(|e| e.accuracy), Some(0.6));
    assert_eq!(stored.phases.last().unwrap().name, "centralised_baseline");
    // The sample report finished in 2026; the baseline moves it to now.
    assert!(stored.finished_at > sample_report().finished_at);
    let text = std::fs::read_to_string(dir.path().join(REPORT_MD)).unwrap();
    assert!(text.contains("| c accuracy (trained on the union of the real shards) | 60.0% |"));
    assert!(text.contains("| 75.0% |"));
    assert!(text.contains("## Confusion matrix of c\n"));
}

#[test]
fn samples_of_partial_image_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_run_folder(dir.path(), &sample_report(), &[(1, vec![0; 100])]).unwrap_err();
    assert!(
        matches!(err, ReportError::Samples { shard: 1, len: 100 }),
        "{err}"
    );
}

#[test]
fn read_report_of_missing_folder_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_report(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope/report.json"), "{err}");
}

#[test]
fn write_run_folder_draws_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let report = sample_report();
    let samples = [(0, sample_images(20)), (1, sample_images(3))];
    write_run_folder(dir.path(), &report, &samples).unwrap();
    for file in [
        "samples/site-0.png",
        "samples/site-1.png",
        "confusion.png",
        "label_histograms.png",
        "losses.png",
    ] {
        let path = dir.path().join(file);
        let picture = image::open(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
        assert!(picture.width() > 0, "{file} is empty");
    }
    assert!(!dir.path().join("confusion_centralised.png").exists());
}

#[test]
fn centralised_baseline_draws_its_confusion() {
    let dir = tempfile::tempdir().unwrap();
    write_run_folder(dir.path(), &sample_report(), &[]).unwrap();
    add_centralised_baseline(dir.path(), evaluation(0.6), 0.75, 42.0).unwrap();
    assert!(dir.path().join("confusion_centralised.png").is_file());
}
