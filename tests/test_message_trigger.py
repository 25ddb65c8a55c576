"""Issue 2 (f): a new message bumps its conversation's counters and updated_at."""

import pytest

COUNTERS = (
    "SELECT unread_owner, unread_customer, unread_rider FROM chat_conversations WHERE id = %s"
)


@pytest.fixture
def conversation(head_db):
    website = head_db.scalar("INSERT INTO websites DEFAULT VALUES RETURNING id")
    return head_db.scalar(
        "INSERT INTO chat_conversations (website_id, customer_id, updated_at) "
        "VALUES (%s, 'customer_1', '2020-01-01') RETURNING id",
        (website,),
    )


def send(db, conversation, sender_type):
    db.conn.execute(
        "INSERT INTO chat_messages (conversation_id, sender_type, content) VALUES (%s, %s, 'hi')",
        (conversation, sender_type),
    )


@pytest.mark.parametrize(
    "sender, counters",
    [
        ("customer", (1, 0, 1)),  # owner and rider have one unread
        ("owner", (0, 1, 1)),  # customer and rider
        ("rider", (1, 1, 0)),  # customer and owner
        ("system", (0, 0, 0)),  # no counter changes
    ],
)
def test_each_sender_bumps_the_right_counters(head_db, conversation, sender, counters):
    send(head_db, conversation, sender)
    assert head_db.rows(COUNTERS, (conversation,)) == [counters]


@pytest.mark.parametrize("sender", ["customer", "owner", "rider", "system"])
def test_every_message_bumps_updated_at(head_db, conversation, sender):
    send(head_db, conversation, sender)
    assert (
        head_db.scalar(
            "SELECT updated_at > '2020-01-01' FROM chat_conversations WHERE id = %s",
            (conversation,),
        )
        is True
    )


def test_counters_add_up_over_a_conversation(head_db, conversation):
    for sender in ["customer", "customer", "owner", "rider", "system"]:
        send(head_db, conversation, sender)
    assert head_db.rows(COUNTERS, (conversation,)) == [(3, 2, 3)]


def test_updating_a_conversation_sets_updated_at(head_db, conversation):
    head_db.conn.execute(
        "UPDATE chat_conversations SET status = 'closed' WHERE id = %s", (conversation,)
    )
    assert (
        head_db.scalar(
            "SELECT updated_at > '2020-01-01' FROM chat_conversations WHERE id = %s",
            (conversation,),
        )
        is True
    )
