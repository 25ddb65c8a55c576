"""DATABASE_URL handling: Supabase's URL forms, the psycopg2 driver, masking."""

import pytest

from chatdb.urls import (
    DatabaseUrlError,
    database_url_from_env,
    libpq_url,
    mask_url,
    mask_url_text,
    parse_database_url,
)

SUPABASE = "postgres://postgres.abcd:s3cret@db.abcd.supabase.co:5432/postgres?sslmode=require"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_supabase_schemes_use_psycopg2(scheme):
    url = parse_database_url(f"{scheme}://u:p@h:5432/db")
    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u",
        "p",
        "h",
        5432,
        "db",
    )


def test_query_parameters_are_kept():
    assert parse_database_url(SUPABASE).query == {"sslmode": "require"}


def test_password_is_masked_when_printed():
    printed = mask_url(parse_database_url(SUPABASE))
    assert "s3cret" not in printed
    assert printed.startswith("postgresql+psycopg2://postgres.abcd:***@db.abcd.supabase.co")


def test_unparseable_text_is_masked_too():
    assert mask_url_text("mysql://root:hunter2@db/x") == "mysql://root:***@db/x"
    assert "hunter2" not in mask_url_text("root:hunter2@db")


def test_libpq_form_drops_the_driver():
    assert libpq_url(parse_database_url("postgres://u@h/db")) == "postgresql://u@h/db"


@pytest.mark.parametrize(
    "raw, words",
    [
        ("", ["DATABASE_URL is not set", "./dev up"]),
        ("   ", ["DATABASE_URL is not set"]),
        ("mysql://u:secret@h/db", ["DATABASE_URL is malformed", "./dev up"]),
        ("localhost:5432", ["DATABASE_URL is malformed"]),
        ("postgresql://u@h", ["names no database"]),
        ("postgresql://u@h:port/db", ["DATABASE_URL is malformed"]),
    ],
)
def test_bad_urls_give_one_sentence_naming_the_variable(raw, words):
    with pytest.raises(DatabaseUrlError) as caught:
        database_url_from_env({"DATABASE_URL": raw})
    message = str(caught.value)
    assert "\n" not in message
    assert "secret" not in message
    for word in words:
        assert word in message
