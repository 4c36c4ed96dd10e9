"""What the command line says about one run of each job, typed."""
from dataclasses import dataclass
from datetime import date
from typing import Optional

from idstore.config import IdsFrom


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False  # read, validate and plan; write nothing
    force: bool = False  # mirror past its guards
    full: bool = False  # every id, even when a delta run could
    break_lock: bool = False  # take the table's lock from a run that still holds it


@dataclass(frozen=True)
class FilterOptions:
    dry_run: bool = False  # list and estimate; read no event, write nothing
    start: Optional[date] = None  # first day read; None = the archive's first
    end: Optional[date] = None  # last day read; None = the archive's last
    ids_from: IdsFrom = IdsFrom.SNAPSHOT
