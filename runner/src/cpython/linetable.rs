//! CPython 3.11+ location tables (`co_linetable`, Objects/locations.md): the source line of
//! an instruction.

/// The line of the instruction at `addr` (in code units from the start of the bytecode), or
/// None when the table has no line for it.
pub fn line_for(table: &[u8], firstlineno: i32, addr: u64) -> Option<i32> {
    let mut reader = Reader {
        bytes: table,
        pos: 0,
    };
    let mut line = firstlineno;
    let mut start = 0u64;
    while let Some(first) = reader.byte() {
        if first & 0x80 == 0 {
            return None;
        }
        let code = (first >> 3) & 15;
        let length = u64::from(first & 7) + 1;
        let mut has_line = true;
        match code {
            15 => has_line = false,
            14 => {
                line += reader.svarint()?;
                reader.varint()?;
                reader.varint()?;
                reader.varint()?;
            }
            13 => line += reader.svarint()?,
            10..=12 => {
                line += i32::from(code) - 10;
                reader.byte()?;
                reader.byte()?;
            }
            _ => {
                reader.byte()?;
            }
        }
        if addr < start + length {
            return has_line.then_some(line);
        }
        start += length;
    }
    None
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u32> {
        let mut b = self.byte()?;
        let mut value = u32::from(b & 63);
        let mut shift = 0;
        while b & 64 != 0 {
            b = self.byte()?;
            shift += 6;
            if shift > 30 {
                return None;
            }
            value |= u32::from(b & 63) << shift;
        }
        Some(value)
    }

    fn svarint(&mut self) -> Option<i32> {
        let v = self.varint()?;
        let magnitude = (v >> 1) as i32;
        Some(if v & 1 != 0 { -magnitude } else { magnitude })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table using each entry form, for a code object starting at line 10.
    fn table() -> Vec<u8> {
        vec![
            0x80 | (13 << 3),     // no columns, 1 unit: delta 0 -> line 10
            0x00,                 //   svarint 0
            0x80 | (10 << 3) | 1, // one-line form, 2 units: delta 0 -> line 10
            0x04,                 //   column
            0x09,                 //   end column
            0x80 | (11 << 3) | 1, // one-line form, 2 units: delta +1 -> line 11
            0x04,
            0x0c,
            0x80 | (14 << 3), // long form, 1 unit: delta +1 -> line 12
            0x02,             //   svarint +1
            0x00,             //   end line delta
            0x01,             //   column + 1
            0x03,             //   end column + 1
            0x80 | (15 << 3), // no location, 1 unit
        ]
    }

    #[test]
    fn walks_every_entry_form() {
        let t = table();
        assert_eq!(line_for(&t, 10, 0), Some(10));
        assert_eq!(line_for(&t, 10, 1), Some(10));
        assert_eq!(line_for(&t, 10, 2), Some(10));
        assert_eq!(line_for(&t, 10, 3), Some(11));
        assert_eq!(line_for(&t, 10, 4), Some(11));
        assert_eq!(line_for(&t, 10, 5), Some(12));
        assert_eq!(line_for(&t, 10, 6), None);
        assert_eq!(line_for(&t, 10, 7), None);
    }

    #[test]
    fn signed_varints() {
        // Long form with delta -3 (svarint 7), then a short form.
        let t = [0x80 | (14 << 3), 0x07, 0, 1, 2, 0x80, 0x01];
        assert_eq!(line_for(&t, 20, 0), Some(17));
        assert_eq!(line_for(&t, 20, 1), Some(17));
        // A varint continued over two bytes: 1 + (1 << 6) = 65 -> delta -32.
        let t = [0x80 | (13 << 3), 0x40 | 0x01, 0x01];
        assert_eq!(line_for(&t, 100, 0), Some(68));
    }

    #[test]
    fn malformed_tables_end_cleanly() {
        assert_eq!(line_for(&[], 1, 0), None);
        assert_eq!(line_for(&[0x01], 1, 0), None);
        assert_eq!(line_for(&[0x80 | (14 << 3)], 1, 0), None);
    }
}
