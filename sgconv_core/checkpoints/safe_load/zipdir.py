"""A torch.save archive's zip directory, read and checked before torch inflates any record; tar files spotted.

A record whose declared size is over a budget is refused before it is inflated (`MAX_INFLATED_BYTES` for
compressed records, ``max_bytes`` for all records in total, `MAX_RECORDS` entries); a stored record must lie
inside the file; a TorchScript archive (torch.load would hand it to torch.jit.load) is refused.
"""
from __future__ import annotations

import tarfile
import zipfile

from .budget import MAX_INFLATED_BYTES, MAX_RECORDS, BudgetExceeded, Refused, _bytes


def _zip_records(f, file_size: int, max_bytes: int) -> dict[str, int]:
    """{record name below the archive folder: declared size} from a zip's directory, before torch reads any.

    Raises BudgetExceeded / Refused / zipfile.BadZipFile.
    """
    infos = _zip_directory(f)
    prefix = infos[0].filename.split("/", 1)[0] + "/"  # torch's reader takes the first entry's folder
    sizes = _RecordSizes(file_size, max_bytes)
    records: dict[str, int] = {}
    for info in infos:
        sizes.add(info)
        name = info.filename
        if name.startswith(prefix):
            key = name[len(prefix):]
            if key in records:
                raise zipfile.BadZipFile(f"record '{name}' appears twice")
            records[key] = info.file_size
    if "constants.pkl" in records:
        raise Refused("a TorchScript archive: torch.load would hand it to torch.jit.load, which runs code from "
                      "the file")
    return records


def _zip_directory(f) -> list[zipfile.ZipInfo]:
    """The directory's entries, at most MAX_RECORDS of them (counted from the end record before the directory is
    read, where zipfile exposes it), and at least one."""
    end = getattr(zipfile, "_EndRecData", None)  # the end record, read before the directory is
    if end is not None:
        rec = end(f)
        if rec and rec[zipfile._ECD_ENTRIES_TOTAL] > MAX_RECORDS:
            raise BudgetExceeded(f"the archive lists {rec[zipfile._ECD_ENTRIES_TOTAL]:,} records, over the "
                                 f"{MAX_RECORDS:,} budget")
    infos = zipfile.ZipFile(f).infolist()
    if len(infos) > MAX_RECORDS:
        raise BudgetExceeded(f"the archive lists {len(infos):,} records, over the {MAX_RECORDS:,} budget")
    if not infos:
        raise zipfile.BadZipFile("an empty archive")
    return infos


class _RecordSizes:
    """The declared sizes of an archive's records, counted one record at a time against the budgets."""

    def __init__(self, file_size: int, max_bytes: int):
        self.file_size, self.max_bytes = file_size, max_bytes
        self.inflate_budget = min(MAX_INFLATED_BYTES, max_bytes)
        self.total = self.inflated = 0

    def add(self, info: zipfile.ZipInfo) -> None:
        """Count one record: a stored one must lie inside the file, a compressed one within the inflate budget,
        all of them together within max_bytes; other compression methods are refused."""
        if info.compress_type == zipfile.ZIP_STORED:
            self._stored(info)
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            self._deflated(info)
        else:
            raise zipfile.BadZipFile(f"record '{info.filename}' uses compression method {info.compress_type}")
        self.total += info.file_size
        if self.total > self.max_bytes:
            raise BudgetExceeded(f"the archive's records would take {_bytes(self.total)}, over the "
                                 f"{_bytes(self.max_bytes)} limit (max_bytes)")

    def _stored(self, info: zipfile.ZipInfo) -> None:
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > self.file_size:
            raise zipfile.BadZipFile(f"record '{info.filename}' declares {info.file_size:,} bytes the file does "
                                     "not hold")

    def _deflated(self, info: zipfile.ZipInfo) -> None:
        self.inflated += info.file_size
        if info.file_size > self.inflate_budget:
            raise BudgetExceeded(f"record '{info.filename}' would inflate to {_bytes(info.file_size)}, over the "
                                 f"{_bytes(self.inflate_budget)} budget for compressed records")
        if self.inflated > self.inflate_budget:
            raise BudgetExceeded(f"compressed records would inflate to {_bytes(self.inflated)} in total, over the "
                                 f"{_bytes(self.inflate_budget)} budget")


def _is_tar(f) -> bool:
    """The pre-2018 torch format, a tar archive: torch.load would extract it and trust its storage sizes."""
    try:
        return tarfile.is_tarfile(f)
    finally:
        f.seek(0)
