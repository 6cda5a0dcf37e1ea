"""Sudoku CSV files in the Sudoku-Extreme format (``source,question,answer,rating``), read and checked row by row.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import datasets
import numpy as np

from datamodules.tables import puzzle_dataset
from gram_lightning.errors import GramUserError


class SudokuFormatError(GramUserError):
    """A malformed row in a Sudoku CSV file; the message names the file and line."""


CSV_HEADER = ("source", "question", "answer", "rating")
_CSV_CHUNK = 65536  # rows validated at once (bounds the memory of the vectorized checks)


def read_sudoku_csv(path: str | Path, n: int | None = 9, limit: int | None = None) -> datasets.Dataset:
    """Read a Sudoku CSV in the Sudoku-Extreme format (``source,question,answer,rating``).

    ``question`` uses '.' or '0' for blanks and '1'..'n' for digits; ``answer`` is all digits.
    Every row is checked: column count, lengths, characters, the answer agreeing with every given
    and the answer being a valid Sudoku.

    Args:
        path: The CSV file.
        n: Board side (4 or 9), or None to infer it from the first question's length.
        limit: Read only the first ``limit`` rows.

    Raises:
        SudokuFormatError: On the first malformed row, naming the file, line number and problem.
    """
    path = Path(path)
    questions, answers, lines, n, pending = _read_csv_rows(path, n, limit)
    length = n * n
    q = np.frombuffer("".join(questions).encode("ascii"), dtype=np.uint8).reshape(-1, length)
    a = np.frombuffer("".join(answers).encode("ascii"), dtype=np.uint8).reshape(-1, length)
    # Rows before a structural error are checked first: the earliest problem in the file wins.
    for start in range(0, len(q), _CSV_CHUNK):
        row, problem = _first_bad_row(q[start : start + _CSV_CHUNK], a[start : start + _CSV_CHUNK], n)
        if row is not None:
            raise SudokuFormatError(f"{path}, line {lines[start + row]}: {problem}")
    if pending is not None:
        raise pending
    if not questions:  # checked before anything is cached: an empty dataset would be cached as if it were data
        raise SudokuFormatError(f"{path} has no puzzles: it holds the header and no rows")
    q_digits = np.where((q == ord(".")) | (q == ord("0")), 0, q - ord("0"))
    a_digits = a - ord("0")
    rows = len(q)
    # digits -> tokens; one solution per puzzle, the solver's effort unknown (-1)
    return puzzle_dataset(q_digits + 1, a_digits + 1, np.ones(rows), "guesses", np.full(rows, -1))


def _read_csv_rows(
    path: Path, n: int | None, limit: int | None
) -> tuple[list[str], list[str], list[int], int, SudokuFormatError | None]:
    """Questions, answers and line numbers; stops at the first structural error and returns it
    (the caller reports an earlier content error first, if any)."""
    questions, answers, lines = [], [], []

    def error(line: int, problem: str) -> SudokuFormatError:
        return SudokuFormatError(f"{path}, line {line}: {problem}")

    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != list(CSV_HEADER):
            raise error(1, f"expected the header {','.join(CSV_HEADER)!r}, got {','.join(header or [])!r}")
        for row in reader:
            if limit is not None and len(questions) >= limit:
                break
            if not row:
                continue  # blank line (e.g. at the end of the file)
            line = reader.line_num
            if len(row) != len(CSV_HEADER):
                return questions, answers, lines, n or 9, error(
                    line, f"expected {len(CSV_HEADER)} columns, got {len(row)}"
                )
            question, answer = row[1].strip(), row[2].strip()
            if n is None:
                n = _infer_size(len(question), error(line, f"question length {len(question)} is not 16 or 81"))
            problem = _length_problem("question", question, n) or _length_problem("answer", answer, n)
            if problem:
                return questions, answers, lines, n, error(line, problem)
            questions.append(question)
            answers.append(answer)
            lines.append(line)
    return questions, answers, lines, n or 9, None


def _length_problem(name: str, board: str, n: int) -> str | None:
    if len(board) != n * n:
        return f"{name} has {len(board)} characters, expected {n * n} for a {n}x{n} board"
    if not board.isascii():
        return f"{name} has non-ASCII characters"
    return None


def _infer_size(length: int, err: SudokuFormatError) -> int:
    for n in (4, 9):
        if n * n == length:
            return n
    raise err


def _first_bad_row(q: np.ndarray, a: np.ndarray, n: int) -> tuple[int | None, str]:
    """First row (and its problem) failing a content check, on ASCII code arrays (R, L)."""
    digit_lo, digit_hi = ord("1"), ord("0") + n
    q_digit = (q >= digit_lo) & (q <= digit_hi)
    a_digit = (a >= digit_lo) & (a <= digit_hi)
    bad_q_char = ~(q_digit | (q == ord(".")) | (q == ord("0")))
    bad_a_char = ~a_digit
    contradiction = q_digit & (q != a)
    checks = [
        (bad_q_char.any(1), "question has a character other than '.', '0' or '1'..'{n}': {char!r}", bad_q_char, q),
        (bad_a_char.any(1), "answer has a character other than '1'..'{n}': {char!r}", bad_a_char, a),
        (contradiction.any(1), "answer contradicts the given {char!r} of the question", contradiction, q),
    ]
    valid = _valid_digit_boards(np.where(a_digit, a - ord("0"), 0), n)
    bad = np.zeros(len(q), dtype=bool)
    for rows, *_ in checks:
        bad |= rows
    bad |= ~valid
    if not bad.any():
        return None, ""
    row = int(bad.argmax())
    for rows, message, cells, chars in checks:
        if rows[row]:
            cell = int(cells[row].argmax())
            char = chr(chars[row, cell])
            return row, message.format(n=n, char=char) + f" at cell {cell} (row {cell // n + 1}, column {cell % n + 1})"
    return row, "answer is not a valid Sudoku (a row, column or box repeats a digit)"


def _valid_digit_boards(digits: np.ndarray, n: int) -> np.ndarray:
    """(R, L) digits 1..n (0 = invalid) -> (R,) bool: every row, column and box holds 1..n."""
    box = math.isqrt(n)
    digits = digits.astype(np.int32)  # uint8 shifts would overflow past 8 digits
    bits = np.where(digits > 0, np.left_shift(1, np.maximum(digits, 1) - 1), 0)
    grid = bits.reshape(-1, n, n)
    boxes = grid.reshape(-1, box, box, box, box).transpose(0, 1, 3, 2, 4).reshape(-1, n, n)
    full = (1 << n) - 1
    # n cells whose bits OR to all n digits hold each digit exactly once.
    return (
        (np.bitwise_or.reduce(grid, axis=2) == full).all(1)
        & (np.bitwise_or.reduce(grid, axis=1) == full).all(1)
        & (np.bitwise_or.reduce(boxes, axis=2) == full).all(1)
    )
