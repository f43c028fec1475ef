//! Faults of the image cache that the cache's own tests leave out: a blob cut short (a killed
//! download, a full disk, a careless `cp`) is refused and deleted exactly like a flipped byte, so
//! the next acquisition fetches or extracts it again instead of booting half a kernel.

use std::fs::OpenOptions;

use crate::obtain::cache::Cache;

#[test]
fn a_truncated_or_emptied_cached_image_is_refused_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), true).unwrap();
    let image: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    for cut in [image.len() as u64 - 1, 4096, 0] {
        let blob = cache.insert_bytes(&image).unwrap();
        assert_eq!(cache.valid_blob(&blob.sha256).unwrap(), Some(blob.clone()));
        OpenOptions::new()
            .write(true)
            .open(&blob.path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        assert_eq!(
            cache.valid_blob(&blob.sha256).unwrap(),
            None,
            "cut to {cut} bytes"
        );
        assert!(!blob.path.exists(), "a truncated blob is deleted");
    }
}
