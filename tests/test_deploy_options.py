"""Issue 3: the -x options of a deploy are read strictly (no database needed)."""

import pytest
from alembic.util import CommandError

from chatdb.deploy.locking import DeployOptions
from chatdb.deploy.options import count, duration, flag


@pytest.mark.parametrize(
    "text, ms",
    [
        ("500ms", 500),
        ("5s", 5000),
        ("1.5s", 1500),
        ("2min", 120_000),
        ("1h", 3_600_000),
        ("0", 0),
        ("0s", 0),
        (" 5 S ", 5000),
    ],
)
def test_durations_need_a_unit(text, ms):
    assert duration({"lock_timeout": text}, "lock_timeout", "5s").ms == ms


@pytest.mark.parametrize("text", ["5", "-1s", "5 seconds", "30d", "600h", ""])
def test_bad_durations_name_the_option(text):
    with pytest.raises(CommandError, match="^-x lock_timeout="):
        duration({"lock_timeout": text}, "lock_timeout", "5s")


def test_the_sql_value_is_milliseconds():
    assert duration({}, "statement_timeout", "1min").sql == "'60000ms'"


def test_counts_and_flags():
    assert count({"lock_retries": "0"}, "lock_retries", 3) == 0
    assert count({}, "lock_retries", 3) == 3
    with pytest.raises(CommandError, match="not a whole number"):
        count({"lock_retries": "-1"}, "lock_retries", 3)
    assert flag({"allow_data_loss": "TRUE"}, "allow_data_loss") is True
    assert flag({}, "allow_data_loss") is False
    with pytest.raises(CommandError, match="allow_data_loss='sure' is not a boolean"):
        flag({"allow_data_loss": "sure"}, "allow_data_loss")


def test_defaults_and_backoff():
    opts = DeployOptions.from_x({})
    assert (
        str(opts.lock_timeout),
        str(opts.statement_timeout),
        str(opts.migration_lock_wait),
        opts.lock_retries,
    ) == ("5s", "1min", "10min", 3)
    assert [opts.backoff(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]
