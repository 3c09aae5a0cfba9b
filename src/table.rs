//! Columns laid out as Docker lays out its listings (Go's `text/tabwriter` with a minimum
//! width of 10, padding 3, spaces): cells are separated by tabs, each column is as wide as its
//! widest cell plus 3, and the last cell of a line is never padded. Scripts that cut Docker's
//! output by column positions cut ferry's the same way.

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Aligns `text`: lines of tab-separated cells.
pub fn align(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        // Only cells followed by a tab are aligned; the last one is free.
        for (i, cell) in cells.iter().take(cells.len() - 1).enumerate() {
            let w = (width(cell) + PADDING).max(MIN_WIDTH);
            match widths.get_mut(i) {
                Some(cur) => *cur = (*cur).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    for cells in &lines {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.extend(std::iter::repeat_n(' ', widths[i] - width(cell)));
            }
        }
        out.push('\n');
    }
    out
}

/// A cell's width as tabwriter counts it: one per character.
fn width(cell: &str) -> usize {
    cell.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_as_docker_container_ls_lays_them_out() {
        // The seed document's `docker container ls -a`, column for column.
        let text = "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES\n\
                    42fc191ea786\thello-world\t\"/hello\"\t48 minutes ago\tExited (0) 48 minutes ago\t\thogehoge_piyopiyo\n";
        assert_eq!(
            align(text),
            "CONTAINER ID   IMAGE         COMMAND    CREATED          STATUS                      PORTS     NAMES\n\
             42fc191ea786   hello-world   \"/hello\"   48 minutes ago   Exited (0) 48 minutes ago             hogehoge_piyopiyo\n"
        );
    }

    #[test]
    fn short_columns_keep_the_minimum_width() {
        assert_eq!(
            align("REPOSITORY\tTAG\tSIZE\nhello-world\tlatest\t13.3kB\n"),
            "REPOSITORY    TAG       SIZE\nhello-world   latest    13.3kB\n"
        );
    }
}
