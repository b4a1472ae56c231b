//! Keeping a buffer's allocation across borrows of different lifetimes.
//!
//! A list of values that borrow from one block of text (or one window's
//! panes) cannot outlive it, so it would be freed and made again for the
//! next one. kflow hands freed memory back to the OS at once, and a fresh
//! buffer is then faulted in and zeroed page by page (`clear_page_erms` in
//! profiles). [`reuse`] turns an emptied list into an empty list of another
//! item type of the same size and alignment, keeping its allocation: the
//! standard library collects a mapped `Vec` iterator in place.

/// An empty list with `list`'s allocation for items of type `U` (of the
/// same size and alignment as `T`, or the allocation is not kept).
/// `fill` is never called: the list is emptied first.
pub fn reuse<T, U>(mut list: Vec<T>, fill: impl FnMut(T) -> U) -> Vec<U> {
    list.clear();
    list.into_iter().map(fill).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_list_keeps_its_allocation_under_another_lifetime() {
        let text = String::from("borrowed");
        let mut list: Vec<&str> = Vec::with_capacity(1000);
        list.push(&text);
        let kept: Vec<&'static str> = reuse(list, |_| "");
        assert!(kept.is_empty());
        assert!(kept.capacity() >= 1000, "capacity {}", kept.capacity());
    }
}
