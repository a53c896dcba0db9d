"""Write a shifted copy of data/credit_data.csv for the drift demo: income halved, a third of the applicants with a
housing category the model never saw ("caravan").

python scripts/shifted_applicants.py .monitoring/shifted_applicants.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parent.parent / "data" / "credit_data.csv"
NEW_HOME_CATEGORY = "caravan"


def shifted(frame: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    copy = frame.copy()
    copy["Income"] = copy["Income"] / 2
    third = copy.sample(frac=1 / 3, random_state=seed).index
    copy.loc[third, "Home"] = NEW_HOME_CATEGORY
    return copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    arguments = parser.parse_args()
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    shifted(pd.read_csv(DATA)).to_csv(arguments.output, index=False)
    print(f"wrote {arguments.output}: income halved, a third of the applicants with Home={NEW_HOME_CATEGORY!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
