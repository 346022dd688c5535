"""Reading labeled data: CSV, TSV, JSON Lines and Parquet, with column detection and
validation that names the offending rows."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, DataFileNotFound, first_line

TEXT_COLUMNS = ("text", "sentence", "review", "content")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target")
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
DEFAULT_LABEL_SEPARATOR = "|"


@dataclass
class LabeledData:
    """Texts with their labels.

    ``labels`` holds one string per text, or for multi-label data a list of strings per
    text. ``classes`` is the sorted set of label names.
    """

    texts: list[str]
    labels: list
    multi_label: bool = False
    classes: list[str] = field(default_factory=list)
    source: str = ""
    text_column: str = ""
    label_columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.classes:
            if self.multi_label:
                self.classes = sorted({c for row in self.labels for c in row})
            else:
                self.classes = sorted(set(self.labels))

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        """Examples per class (for multi-label data: texts that carry each label)."""
        if self.multi_label:
            counter = Counter(c for row in self.labels for c in row)
        else:
            counter = Counter(self.labels)
        return {c: counter.get(c, 0) for c in self.classes}

    def subset(self, indices) -> LabeledData:
        indices = list(indices)
        return replace(
            self,
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            classes=list(self.classes),
        )

    def label_matrix(self) -> np.ndarray:
        """Multi-hot matrix (n, n_classes) of a multi-label set."""
        index = {c: i for i, c in enumerate(self.classes)}
        out = np.zeros((len(self.labels), len(self.classes)), dtype=np.int64)
        for row, labels in enumerate(self.labels):
            for label in labels:
                out[row, index[label]] = 1
        return out


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataError(
            f"{path}: unknown file type {path.suffix or '(none)'!r}; "
            "use .csv, .tsv, .jsonl or .parquet"
        )
    return fmt


def _decompress(path: Path) -> bytes:
    """The bytes of ``path``, decompressed by its last suffix (.gz, .bz2, .xz, .zst, .zip).

    Raises:
        DataError: the file is damaged or truncated, a .zip does not hold exactly one file, or
            the zstandard package is missing for a .zst file.
    """
    suffix = path.suffix.lower()
    raw = path.read_bytes()
    try:
        if suffix == ".gz":
            import gzip

            return gzip.decompress(raw)
        if suffix == ".bz2":
            import bz2

            return bz2.decompress(raw)
        if suffix == ".xz":
            import lzma

            return lzma.decompress(raw)
        if suffix == ".zst":
            try:
                import zstandard
            except ImportError:
                raise DataError(f"{path}: reading .zst files needs the zstandard package: pip install zstandard") from None
            with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
                return reader.read()
        if suffix == ".zip":
            import io
            import zipfile

            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise DataError(f"{path}: a .zip data file must hold exactly one file, found {len(members)}")
                return zf.read(members[0])
    except DataError:
        raise
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # zlib.error, EOFError (truncated), OSError, LZMAError, BadZipFile, ZstdError...
        raise DataError(f"{path}: cannot decompress ({suffix}): the file is damaged or truncated "
                        f"({type(exc).__name__}: {first_line(exc)})") from None
    return raw


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a data file into a DataFrame, with every error turned into one clear line.

    Raises:
        DataFileNotFound: the file does not exist.
        DataError: the file cannot be decompressed or parsed, is not UTF-8, or has no rows.
    """
    import io

    path = Path(path)
    if not path.exists():
        raise DataFileNotFound(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a data file")
    fmt = _format_of(path)
    try:
        data = _decompress(path) if path.suffix.lower() in COMPRESSIONS else path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {first_line(exc)}") from None
    try:
        if fmt in ("csv", "tsv"):
            data.decode("utf-8")  # a clear message for a file that is not UTF-8
            df = pd.read_csv(io.BytesIO(data), sep="\t" if fmt == "tsv" else ",", encoding="utf-8", dtype=object,
                             keep_default_na=False, na_values=[""])
        elif fmt == "jsonl":
            df = _read_jsonl(path, data)
        else:
            df = pd.read_parquet(io.BytesIO(data))
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte at position {exc.start}); "
            "re-save it as UTF-8"
        ) from None
    except DataError:
        raise
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # pandas, pyarrow and csv raise many types for a malformed file
        raise DataError(f"{path}: cannot read as {fmt}: {first_line(exc)}") from None
    if len(df) == 0:
        raise DataError(f"{path} has no data rows")
    df.columns = [str(c) for c in df.columns]
    if fmt == "csv" and len(df.columns) == 1 and "\t" in df.columns[0]:
        raise DataError(f"{path}: the header holds tab characters and no commas: this looks like "
                        "tab-separated data; name the file .tsv")
    if len(set(df.columns)) != len(df.columns):
        dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
        raise DataError(f"{path}: duplicate column names: {', '.join(dup)}")
    return df


def _read_jsonl(path: Path, data: bytes) -> pd.DataFrame:
    """JSON Lines (one object a line), or one JSON array of objects."""
    text = data.decode("utf-8").lstrip("\ufeff")
    stripped = text.lstrip()
    if stripped.startswith("["):  # a plain JSON array of records
        try:
            records = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DataError(f"{path}: invalid JSON: {first_line(exc)}") from None
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON array of objects")
        for i, row in enumerate(records):
            if not isinstance(row, dict):
                raise DataError(f"{path}: item {i + 1} of the JSON array is {type(row).__name__}, not an object")
        return pd.DataFrame.from_records(records)
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DataError(f"{path}: line {lineno} is not valid JSON: {getattr(exc, 'msg', first_line(exc))}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {lineno} is not a JSON object")
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _find_column(df: pd.DataFrame, names: tuple[str, ...], what: str, option: str, path) -> str | None:
    lower = {c.lower().strip(): c for c in df.columns}
    found = [lower[n] for n in names if n in lower]
    if len(found) > 1:
        raise DataError(
            f"{path}: several possible {what} columns ({', '.join(found)}); choose one with {option}"
        )
    return found[0] if found else None


def _require_column(df: pd.DataFrame, name: str, option: str, path) -> str:
    if name not in df.columns:
        raise DataError(
            f"{path}: no column {name!r} (given with {option}); columns are: {', '.join(df.columns)}"
        )
    return name


def _rows(indices) -> str:
    """Describe 0-based data-row indices as 1-based row numbers, a few of them."""
    numbers = [int(i) + 1 for i in indices]
    shown = ", ".join(str(n) for n in numbers[:10])
    more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    return f"row{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return isinstance(value, str) and not value.strip()


def _nested(value) -> bool:
    return isinstance(value, (list, tuple, dict, set, np.ndarray))


def _texts_of(df: pd.DataFrame, column: str, path) -> list[str]:
    values = df[column].tolist()
    nested = [i for i, v in enumerate(values) if _nested(v)]
    if nested:
        raise DataError(
            f"{path}: column {column!r} holds a list or object instead of a text at {_rows(nested)} "
            "(rows counted from 1, header excluded)"
        )
    bad_unicode = [i for i, v in enumerate(values) if isinstance(v, str) and not _utf8_ok(v)]
    if bad_unicode:
        raise DataError(f"{path}: invalid Unicode (a lone surrogate) in column {column!r} at {_rows(bad_unicode)}")
    bad = [i for i, v in enumerate(values) if _is_missing(v)]
    if bad:
        raise DataError(
            f"{path}: empty or missing text in column {column!r} at {_rows(bad)} "
            "(rows counted from 1, header excluded)"
        )
    return [str(v) for v in values]


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_binary_column(series: pd.Series) -> bool:
    values = {str(v).strip() for v in series.tolist() if not _is_missing(v)}
    return bool(values) and values <= {"0", "1", "0.0", "1.0", "True", "False", "true", "false"}


def read_labeled(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_columns: list[str] | None = None,
    label_separator: str = DEFAULT_LABEL_SEPARATOR,
) -> LabeledData:
    """Read texts and labels from a data file.

    The text and label columns are found by common names unless given. The data is
    multi-label when a label cell holds a list (JSON Lines) or several labels joined by
    ``label_separator``, or when the labels are given as 0/1 columns (``label_columns``,
    or found automatically when there is no label column and every other column is 0/1).

    Raises:
        DataFileNotFound, DataError
    """
    if not isinstance(label_separator, str) or not label_separator:
        raise DataError("--label-separator must be at least one character")
    df = read_table(path)
    text_col = (
        _require_column(df, text_column, "--text-column", path)
        if text_column
        else _find_column(df, TEXT_COLUMNS, "text", "--text-column", path)
    )
    if text_col is None:
        raise DataError(
            f"{path}: no text column found (looked for {', '.join(TEXT_COLUMNS)}); "
            f"columns are: {', '.join(df.columns)}; name it with --text-column"
        )
    texts = _texts_of(df, text_col, path)

    if label_columns:
        for c in label_columns:
            _require_column(df, c, "--label-columns", path)
        return _from_binary_columns(df, texts, text_col, list(label_columns), path)

    label_col = (
        _require_column(df, label_column, "--label-column", path)
        if label_column
        else _find_column(df, LABEL_COLUMNS, "label", "--label-column", path)
    )
    if label_col is None:
        others = [c for c in df.columns if c != text_col]
        if len(others) >= 2 and all(_is_binary_column(df[c]) for c in others):
            return _from_binary_columns(df, texts, text_col, others, path)
        raise DataError(
            f"{path}: no label column found (looked for {', '.join(LABEL_COLUMNS)}); "
            f"columns are: {', '.join(df.columns)}; name it with --label-column"
        )

    values = df[label_col].tolist()
    bad = [i for i, v in enumerate(values) if _is_missing(v)]
    if bad:
        raise DataError(
            f"{path}: empty or missing label in column {label_col!r} at {_rows(bad)} "
            "(rows counted from 1, header excluded)"
        )
    objects = [i for i, v in enumerate(values) if isinstance(v, (dict, set))
               or (isinstance(v, (list, tuple, np.ndarray)) and any(_nested(p) or p is None for p in v))]
    if objects:
        raise DataError(
            f"{path}: column {label_col!r} holds an object (or a list of non-labels) at {_rows(objects)}; "
            "a label is a string, or a list of strings for multi-label data"
        )
    multi = any(isinstance(v, (list, tuple, np.ndarray)) for v in values) or any(
        isinstance(v, str) and label_separator in v for v in values
    )
    if multi:
        labels = []
        for v in values:
            parts = list(v) if isinstance(v, (list, tuple, np.ndarray)) else str(v).split(label_separator)
            labels.append(sorted({_label_str(p).strip() for p in parts if str(p).strip()}))
        return LabeledData(texts, labels, multi_label=True, source=str(path), text_column=text_col,
                           label_columns=[label_col])
    labels = [_label_str(v).strip() for v in values]
    return LabeledData(texts, labels, source=str(path), text_column=text_col, label_columns=[label_col])


def _label_str(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _from_binary_columns(df, texts, text_col, columns, path) -> LabeledData:
    labels: list[list[str]] = [[] for _ in texts]
    for c in columns:
        for i, v in enumerate(df[c].tolist()):
            if _is_missing(v):
                raise DataError(f"{path}: empty label cell in column {c!r} at {_rows([i])}")
            s = str(v).strip().lower()
            if s in ("1", "1.0", "true"):
                labels[i].append(str(c))
            elif s not in ("0", "0.0", "false"):
                raise DataError(f"{path}: column {c!r} must hold 0 or 1, found {v!r} at {_rows([i])}")
    return LabeledData(texts, labels, multi_label=True, classes=[str(c) for c in columns], source=str(path),
                       text_column=text_col, label_columns=list(columns))


def read_texts(path: str | Path, *, text_column: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read a file of texts to predict: returns the table and the name of its text column.

    Raises:
        DataFileNotFound, DataError
    """
    df = read_table(path)
    if text_column:
        col = _require_column(df, text_column, "--text-column", path)
    else:
        col = _find_column(df, TEXT_COLUMNS, "text", "--text-column", path)
        if col is None and len(df.columns) == 1:
            col = df.columns[0]
        if col is None:
            raise DataError(
                f"{path}: no text column found (looked for {', '.join(TEXT_COLUMNS)}); "
                f"columns are: {', '.join(df.columns)}; name it with --text-column"
            )
    _texts_of(df, col, path)
    return df, col


def validate_for_training(data: LabeledData) -> None:
    """Check that a data set can train a classifier.

    Raises:
        DataError: fewer than two classes, or a class with a single example.
    """
    counts = data.counts()
    if data.multi_label:
        if len(counts) < 2:
            raise DataError(f"{data.source}: multi-label data needs at least two labels, found {list(counts)}")
        n = len(data)
        rare = [c for c, k in counts.items() if k < 2]
        if rare:
            raise DataError(
                f"{data.source}: label(s) {', '.join(map(repr, rare))} appear on fewer than 2 texts; "
                "every label needs at least 2 examples"
            )
        always = [c for c, k in counts.items() if k == n]
        if always:
            raise DataError(
                f"{data.source}: label(s) {', '.join(map(repr, always))} are on every text; "
                "a label needs negative examples too"
            )
        return
    if len(counts) < 2:
        only = next(iter(counts), "")
        raise DataError(f"{data.source}: only one class ({only!r}); a classifier needs at least two")
    single = [c for c, k in counts.items() if k < 2]
    if single:
        raise DataError(
            f"{data.source}: class(es) {', '.join(map(repr, single))} have a single example; "
            "every class needs at least 2"
        )


def sample_shots(data: LabeledData, shots: int, seed: int = 42) -> tuple[LabeledData, LabeledData]:
    """Draw ``shots`` examples of each class (seeded); return (sampled, rest).

    A class with fewer examples than ``shots`` contributes all it has. For multi-label
    data, texts are drawn until every label has ``shots`` texts or no more are left.

    Raises:
        DataError: ``shots`` is smaller than 2.
    """
    if shots < 2:
        raise DataError(f"--shots must be at least 2, got {shots}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    chosen: list[int] = []
    have: Counter = Counter()
    for i in order:
        labels = data.labels[i] if data.multi_label else [data.labels[i]]
        if any(have[c] < shots for c in labels):
            chosen.append(int(i))
            have.update(labels)
    chosen_set = set(chosen)
    rest = [i for i in range(len(data)) if i not in chosen_set]
    return data.subset(sorted(chosen)), data.subset(rest)


def split_holdout(data: LabeledData, fraction: float, seed: int = 42) -> tuple[LabeledData, LabeledData]:
    """Hold out a stratified ``fraction`` of the rows: return (train, held_out).

    Raises:
        DataError: the fraction is not between 0 and 1, or leaves a class without rows.
    """
    if not 0 < fraction < 1:
        raise DataError(f"--holdout must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    keys = [("|".join(labels) if data.multi_label else labels) for labels in data.labels]
    held: list[int] = []
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        if len(idx) >= 4:
            n_held = min(max(n_held, 1), len(idx) - 2)
        else:
            n_held = 0
        held.extend(idx[:n_held])
    held_set = set(held)
    train = [i for i in range(len(data)) if i not in held_set]
    if not held:
        raise DataError(f"{data.source}: too few rows to hold out {fraction:.0%} for evaluation; use --eval FILE")
    return data.subset(train), data.subset(sorted(held))
