//! File I/O: round trips in both orders and both precisions, and every kind of bad file.

use poly_data::{
    DataError, TensorData, read_npy, read_safetensors, write_npy, write_npy_fortran,
    write_safetensors_f32,
};

#[test]
fn npy_round_trips_in_c_and_fortran_order() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<f64> = (0..24).map(|i| i as f64 * 0.5 - 3.0).collect();
    let c = dir.path().join("c.npy");
    let f = dir.path().join("f.npy");
    write_npy(&c, &[2, 3, 4], &data).unwrap();
    write_npy_fortran(&f, &[2, 3, 4], &data).unwrap();
    assert_ne!(std::fs::read(&c).unwrap(), std::fs::read(&f).unwrap());
    for path in [&c, &f] {
        let t = read_npy(path).unwrap();
        assert_eq!(t.shape, vec![2, 3, 4]);
        assert_eq!(t.data, TensorData::F64(data.clone()));
        let bhnd = t.to_bhnd::<f32>(path).unwrap();
        assert_eq!(bhnd.shape(), [1, 2, 3, 4]);
        assert_eq!(bhnd.as_slice()[5], 5.0 * 0.5 - 3.0);
    }
    let data32: Vec<f32> = data.iter().map(|&x| x as f32).collect();
    write_npy_fortran(&f, &[6, 4], &data32).unwrap();
    let t = read_npy(&f).unwrap();
    assert_eq!(t.data, TensorData::F32(data32));
    assert_eq!(t.to_bhnd::<f64>(&f).unwrap().shape(), [1, 1, 6, 4]);
}

#[test]
fn bad_npy_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.npy");
    assert!(matches!(read_npy(&missing), Err(DataError::Io { .. })));

    let garbage = dir.path().join("garbage.npy");
    std::fs::write(&garbage, b"this is not numpy").unwrap();
    let err = read_npy(&garbage).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }));
    assert!(err.to_string().contains("garbage.npy"));

    let truncated = dir.path().join("truncated.npy");
    write_npy(&truncated, &[100, 8], &vec![1.0f32; 800]).unwrap();
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let err = read_npy(&truncated).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err}");

    let ints = dir.path().join("ints.npy");
    write_npy(&ints, &[4, 2], &[1i32; 8]).unwrap();
    let err = read_npy(&ints).unwrap_err();
    assert!(
        matches!(err, DataError::UnsupportedDType { ref dtype, .. } if dtype.contains("i4")),
        "{err}"
    );

    let rank5 = dir.path().join("rank5.npy");
    write_npy(&rank5, &[1, 1, 1, 2, 2], &[1.0f32; 4]).unwrap();
    let t = read_npy(&rank5).unwrap();
    assert!(matches!(
        t.to_bhnd::<f32>(&rank5),
        Err(DataError::BadRank { .. })
    ));
    let empty = dir.path().join("empty.npy");
    write_npy::<f32>(&empty, &[0, 4], &[]).unwrap();
    let t = read_npy(&empty).unwrap();
    assert!(matches!(
        t.to_bhnd::<f32>(&empty),
        Err(DataError::BadRank { .. })
    ));
}

#[test]
fn safetensors_read_named_tensors_and_report_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qkv.safetensors");
    let q: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let k = vec![2.0f32; 12];
    write_safetensors_f32(&path, &[("q", vec![3, 4], &q), ("k", vec![3, 4], &k)]).unwrap();
    let tensors = read_safetensors(&path, &["q", "k"]).unwrap();
    assert_eq!(tensors[0].shape, vec![3, 4]);
    assert_eq!(tensors[0].data, TensorData::F32(q));
    match read_safetensors(&path, &["q", "k", "v"]) {
        Err(DataError::MissingTensor { name, found, .. }) => {
            assert_eq!(name, "v");
            assert_eq!(found, vec!["k".to_string(), "q".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    assert!(matches!(
        read_safetensors(&path, &["q"]),
        Err(DataError::Format { .. })
    ));
}

#[test]
fn writes_check_the_shape_first_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    for result in [
        write_npy(&path, &[2, 3], &[1.0f32; 5]),
        write_npy_fortran(&path, &[2, 3], &[1.0f32; 7]),
        write_npy(&path, &[usize::MAX, 2], &[1.0f32; 2]),
    ] {
        assert!(matches!(result, Err(DataError::InvalidParameter { .. })));
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file, no temporary"
    );
    // An existing file survives a failed write.
    write_npy(&path, &[2], &[1.0f32, 2.0]).unwrap();
    let before = std::fs::read(&path).unwrap();
    assert!(write_npy(&path, &[3], &[1.0f32]).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn npy_files_whose_header_lies_are_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, header: &str, data: usize| {
        let path = dir.path().join(name);
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; data]);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let cases = [
        // Data shorter, then longer, than the shape says.
        write(
            "short.npy",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }",
            60,
        ),
        write(
            "long.npy",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }",
            68,
        ),
        // A shape whose product wraps to a small number in u64 arithmetic: 2^32 · 2^32 · 2.
        write(
            "wraps.npy",
            "{'descr': '<f8', 'fortran_order': True, 'shape': (4294967296, 4294967296, 2), }",
            16,
        ),
    ];
    for path in &cases {
        match read_npy(path) {
            Err(DataError::Format { reason, .. }) => {
                assert!(reason.contains("shape"), "{reason}")
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    let ok = write(
        "ok.npy",
        "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
        16,
    );
    let t = read_npy(&ok).unwrap();
    assert_eq!(
        (t.shape.clone(), t.to_vec::<f32>()),
        (vec![2, 2], vec![0.0; 4])
    );
}

/// A `.npy` file of float16 values with the given header descr, written byte by byte.
fn half_npy(path: &std::path::Path, descr: &str, shape: &[usize], words: &[u16], big: bool) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for w in words {
        bytes.extend_from_slice(&if big {
            w.to_be_bytes()
        } else {
            w.to_le_bytes()
        });
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn half_precision_files_load_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    // 1, −2, 0.5, 65504 (largest finite), 2^-24 (smallest subnormal), −0 in binary16.
    let words = [0x3c00u16, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000];
    let want = [1.0f32, -2.0, 0.5, 65504.0, 2f32.powi(-24), -0.0];
    for (descr, big) in [("<f2", false), (">f2", true)] {
        let path = dir.path().join(format!("h{big}.npy"));
        half_npy(&path, descr, &[2, 3], &words, big);
        let t = read_npy(&path).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.dtype(), "f32");
        let TensorData::F32(got) = t.data else {
            panic!("f32")
        };
        assert_eq!(got, want);
        assert!(got[5].is_sign_negative());
    }
    // safetensors F16 and BF16 (1.5 is 0x3e00 and 0x3fc0).
    let f16: Vec<u8> = [0x3e00u16, 0x3c00]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0x3fc0u16, 0xbf80]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let tensors = [
        (
            "a",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![2], &f16).unwrap(),
        ),
        (
            "b",
            safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![1, 2], &bf16)
                .unwrap(),
        ),
    ];
    let path = dir.path().join("half.safetensors");
    safetensors::serialize_to_file(tensors, None, &path).unwrap();
    let loaded = read_safetensors(&path, &["a", "b"]).unwrap();
    assert_eq!(loaded[0].data, TensorData::F32(vec![1.5, 1.0]));
    assert_eq!(loaded[1].data, TensorData::F32(vec![1.5, -1.0]));
    assert_eq!(loaded[1].shape, vec![1, 2]);
}
