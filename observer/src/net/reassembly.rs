//! Bounded reassembly of a byte stream from pieces at offsets: TCP segments
//! (offset from the first sequence number seen) and QUIC CRYPTO frames.
//!
//! Input: `(offset, bytes)` pieces in any order, duplicated or overlapping
//! (retransmissions). Output: the contiguous prefix from offset 0. Bytes
//! past `limit` are dropped, so a hostile peer cannot make it grow; pieces
//! are kept in [`Zeroizing`] buffers because a plaintext stream may carry
//! tokens. Standalone (no `crate::` paths): the fuzz targets include it.
use zeroize::Zeroizing;

/// Most pieces kept before the contiguous prefix is rebuilt (a hostile
/// sender can make many tiny pieces; each costs a little work).
const MAX_PIECES: usize = 256;

#[derive(Debug)]
pub struct Reassembler {
    limit: usize,
    /// The contiguous prefix.
    prefix: Zeroizing<Vec<u8>>,
    /// Pieces beyond the prefix, not yet joined.
    pending: Vec<(usize, Zeroizing<Vec<u8>>)>,
    /// A piece was dropped for lying past `limit` or for too many pieces.
    overflowed: bool,
}

impl Reassembler {
    pub fn new(limit: usize) -> Self {
        Self { limit, prefix: Zeroizing::new(Vec::new()), pending: Vec::new(), overflowed: false }
    }

    /// Adds `data` at `offset`. Returns true when the contiguous prefix grew.
    pub fn add(&mut self, offset: u64, data: &[u8]) -> bool {
        let Ok(start) = usize::try_from(offset) else {
            self.overflowed = true;
            return false;
        };
        if start >= self.limit {
            self.overflowed = true;
            return false;
        }
        let end = start.saturating_add(data.len()).min(self.limit);
        if end < start.saturating_add(data.len()) {
            self.overflowed = true;
        }
        let data = &data[..end - start];
        if end <= self.prefix.len() {
            return false; // all of it is already here
        }
        if start > self.prefix.len() {
            if self.pending.len() >= MAX_PIECES {
                self.overflowed = true;
                return false;
            }
            self.pending.push((start, Zeroizing::new(data.to_vec())));
            return false;
        }
        let skip = self.prefix.len() - start;
        self.prefix.extend_from_slice(&data[skip..]);
        self.join_pending();
        true
    }

    /// Moves every pending piece that now touches the prefix into it.
    fn join_pending(&mut self) {
        loop {
            let len = self.prefix.len();
            let Some(i) = self.pending.iter().position(|(s, _)| *s <= len) else { return };
            let (start, data) = self.pending.swap_remove(i);
            let end = start + data.len();
            if end > len {
                self.prefix.extend_from_slice(&data[len - start..]);
            }
        }
    }

    /// The bytes contiguous from offset 0.
    pub fn contiguous(&self) -> &[u8] {
        &self.prefix
    }

    /// Whether some bytes were dropped (past the limit, or too many pieces).
    #[cfg(test)]
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Whether nothing was added yet (or all of it was dropped).
    pub fn is_empty(&self) -> bool {
        self.prefix.is_empty() && self.pending.is_empty()
    }

    /// Whether the stream reached its limit: nothing more can be added.
    pub fn full(&self) -> bool {
        self.prefix.len() >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_out_of_order_and_duplicates() {
        let mut r = Reassembler::new(100);
        assert!(!r.add(5, b"fghij"));
        assert!(r.add(0, b"abcde"));
        assert_eq!(r.contiguous(), b"abcdefghij");
        assert!(!r.add(2, b"cde"), "retransmission adds nothing");
        assert!(r.add(8, b"ijklm"), "overlap extends");
        assert_eq!(r.contiguous(), b"abcdefghijklm");
        assert!(!r.overflowed());
    }

    #[test]
    fn bounded() {
        let mut r = Reassembler::new(4);
        r.add(0, b"abcdef");
        assert_eq!(r.contiguous(), b"abcd");
        assert!(r.overflowed() && r.full());
        assert!(!r.add(u64::MAX, b"x"));
        let mut r = Reassembler::new(1 << 20);
        for i in 0..(MAX_PIECES as u64 + 10) {
            r.add(10 + 2 * i, b"x");
        }
        assert!(r.overflowed());
    }

    proptest::proptest! {
        /// Any split of a stream, delivered in any order with duplicates,
        /// reassembles to the stream.
        #[test]
        fn any_split_any_order(data in proptest::collection::vec(proptest::num::u8::ANY, 1..600),
                               cuts in proptest::collection::vec(0usize..600, 0..12),
                               order in proptest::collection::vec(0usize..100, 0..40)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            cuts.dedup();
            let pieces: Vec<(usize, &[u8])> = cuts.windows(2).map(|w| (w[0], &data[w[0]..w[1]])).collect();
            let mut r = Reassembler::new(1000);
            for i in order {
                let (o, p) = pieces[i % pieces.len()];
                r.add(o as u64, p);
            }
            for (o, p) in &pieces {
                r.add(*o as u64, p);
            }
            proptest::prop_assert_eq!(r.contiguous(), &data[..]);
        }
    }
}
