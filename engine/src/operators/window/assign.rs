//! Window assignment: which pane a record updates and which windows a pane
//! belongs to.
//!
//! kflow stores one partial aggregate per *pane*: the slide-aligned interval
//! `[end - slide, end)` (the gcd of size and slide, since the slide divides
//! the size). A tumbling window is one pane; a sliding window of size `s` and
//! slide `d` is the `s / d` panes ending at `end - s + d, ..., end`. A record
//! therefore updates exactly one partial, however many windows it is in.
//! All arithmetic uses `rem_euclid`, so negative times (before 1970) are
//! assigned like any other.

/// Pane geometry of one window definition, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panes {
    size: i64,
    slide: i64,
}

impl Panes {
    /// Panes for windows of `size` every `slide` (`slide` divides `size`,
    /// both positive: the job compiler guarantees it).
    pub fn new(size: i64, slide: i64) -> Panes {
        let slide = slide.max(1);
        let size = size.max(slide);
        Panes { size, slide }
    }

    /// Window size.
    pub fn size(self) -> i64 {
        self.size
    }

    /// Window slide (= pane length).
    pub fn slide(self) -> i64 {
        self.slide
    }

    /// Whether every window is a single pane (tumbling).
    pub fn is_tumbling(self) -> bool {
        self.size == self.slide
    }

    /// End of the pane holding `time`: the smallest multiple of the slide
    /// that is greater than `time`.
    pub fn pane_end(self, time: i64) -> i64 {
        time.saturating_sub(time.rem_euclid(self.slide))
            .saturating_add(self.slide)
    }

    /// End of the last window that contains the pane ending at `pane_end`.
    pub fn last_window_end(self, pane_end: i64) -> i64 {
        pane_end.saturating_add(self.size - self.slide)
    }

    /// The smallest window end (a multiple of the slide) that is greater
    /// than `time`.
    pub fn next_window_end_after(self, time: i64) -> i64 {
        self.pane_end(time)
    }

    /// Ends of the panes that make up the window ending at `window_end`,
    /// oldest first.
    pub fn panes_of_window(self, window_end: i64) -> impl Iterator<Item = i64> {
        let count = self.size / self.slide;
        let first = window_end.saturating_sub(self.size - self.slide);
        (0..count).map(move |i| first.saturating_add(i * self.slide))
    }

    /// Ends of all windows that contain `time`, oldest first.
    pub fn windows_of(self, time: i64) -> impl Iterator<Item = i64> {
        let count = self.size / self.slide;
        let first = self.pane_end(time);
        (0..count).map(move |i| first.saturating_add(i * self.slide))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn geometry() -> impl Strategy<Value = Panes> {
        (1i64..=3_600_000, 1i64..=12).prop_map(|(slide, n)| Panes::new(slide * n, slide))
    }

    proptest! {
        #[test]
        fn every_window_of_a_time_contains_it(p in geometry(), t in -10_000_000_000i64..10_000_000_000) {
            let ends: Vec<i64> = p.windows_of(t).collect();
            prop_assert_eq!(ends.len() as i64, p.size() / p.slide());
            for end in ends {
                prop_assert!(end - p.size() <= t && t < end, "{t} not in [{}, {end})", end - p.size());
                prop_assert_eq!(end.rem_euclid(p.slide()), 0);
            }
        }

        #[test]
        fn no_other_window_contains_it(p in geometry(), t in -10_000_000_000i64..10_000_000_000) {
            let ends: Vec<i64> = p.windows_of(t).collect();
            let before = ends[0] - p.slide();
            let after = ends[ends.len() - 1] + p.slide();
            prop_assert!(!(before - p.size() <= t && t < before));
            prop_assert!(!(after - p.size() <= t && t < after));
        }

        #[test]
        fn the_pane_of_a_time_is_in_exactly_its_windows(p in geometry(), t in -10_000_000_000i64..10_000_000_000) {
            let pane = p.pane_end(t);
            prop_assert!(pane - p.slide() <= t && t < pane);
            for end in p.windows_of(t) {
                prop_assert!(p.panes_of_window(end).any(|x| x == pane));
            }
            prop_assert_eq!(p.windows_of(t).last(), Some(p.last_window_end(pane)));
        }

        #[test]
        fn panes_of_a_window_tile_it(p in geometry(), k in -1000i64..1000) {
            let end = k * p.slide();
            let panes: Vec<i64> = p.panes_of_window(end).collect();
            prop_assert_eq!(panes[0] - p.slide(), end - p.size());
            prop_assert_eq!(*panes.last().unwrap_or(&0), end);
            for w in panes.windows(2) {
                prop_assert_eq!(w[1] - w[0], p.slide());
            }
        }
    }

    #[test]
    fn negative_times_round_down() {
        let p = Panes::new(60_000, 60_000);
        assert_eq!(p.pane_end(-1), 0);
        assert_eq!(p.pane_end(-60_000), 0);
        assert_eq!(p.pane_end(-60_001), -60_000);
        assert_eq!(p.pane_end(0), 60_000);
    }
}
