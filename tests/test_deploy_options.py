"""Issue 3: the -x options of a deploy are read strictly (no database needed)."""

import pytest
from alembic.util import CommandError

from chatdb.deploy.locking import DeployOptions
from chatdb.deploy.options import count, duration, flag
from chatdb.deploy.run_options import RunOptions


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


def test_a_run_reads_every_option_once_into_one_object():
    """env.py reads -x once (RunOptions.from_x) and hands the result down: every part of
    a run finds its option there, so a new option is one field, not a seventh reader of
    the raw arguments."""
    read = RunOptions.from_x(
        {
            "lock_timeout": "2s",
            "online_008": "never",  # an alias of an earlier release
            "online_batch_ms": "25",
            "allow_data_loss": "true",
            "allow_wider_access": "yes",
            "allow_breaking_calls": "on",
            "allow_transaction_pooler": "1",
            "pgrst_reload": "false",
        },
        {"PGRST_DB_CHANNEL": "from_env"},
    )
    assert (read.deploy.lock_timeout.ms, read.online.mode, read.online.batch_ms) == (
        2000,
        "never",
        25,
    )
    assert read.allow_data_loss and read.allow_wider_access and read.allow_breaking_calls
    assert read.allow_transaction_pooler and not read.pgrst_reload
    assert read.pgrst_channel == "from_env"
    defaults = RunOptions.from_x({}, {})
    assert defaults == RunOptions(), "the defaults of from_x are the dataclass's own"
    assert not (defaults.allow_data_loss or defaults.allow_wider_access)
    assert not (defaults.allow_breaking_calls or defaults.allow_transaction_pooler)


@pytest.mark.parametrize(
    "x_args, message",
    [
        ({"allow_breaking_call": "true"}, "-x allow_breaking_call is not an option of this "),
        ({"allow_breaking_calls": "maybe"}, "-x allow_breaking_calls='maybe' is not a boolean"),
        ({"online_batch_ms": "0"}, "-x online_batch_ms=0 is not a duration"),
        ({"lock_timeout": "5"}, "-x lock_timeout='5' is not a duration"),
    ],
)
def test_one_bad_option_stops_the_whole_reading(x_args, message):
    with pytest.raises(CommandError) as failure:
        RunOptions.from_x(x_args, {})
    assert str(failure.value).startswith(message)
