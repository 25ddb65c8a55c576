"""The chat system's triggers: 004's two, and c002's customer_id default.

Definitions are what follows ``CREATE TRIGGER <name>`` in PostgreSQL's own
``pg_get_triggerdef`` (table qualified, function unqualified when it is in public).
``update_updated_at_column()`` belongs to an earlier migration (see
:data:`models.external.EXTERNAL_FUNCTIONS`); ``update_conversation_on_message()`` and
``set_chat_conversation_customer_id()`` are declared in :mod:`models.functions`.
"""

from models.entities import Trigger

TRIGGERS = (
    Trigger(
        table="chat_conversations",
        name="update_chat_conversations_updated_at",
        definition="BEFORE UPDATE ON public.chat_conversations FOR EACH ROW "
        "EXECUTE FUNCTION update_updated_at_column()",
    ),
    Trigger(
        table="chat_messages",
        name="update_conversation_on_message_trigger",
        definition="AFTER INSERT ON public.chat_messages FOR EACH ROW "
        "EXECUTE FUNCTION update_conversation_on_message()",
    ),
    Trigger(
        table="chat_conversations",
        name="set_chat_conversation_customer_id_trigger",
        definition="BEFORE INSERT ON public.chat_conversations FOR EACH ROW "
        "EXECUTE FUNCTION set_chat_conversation_customer_id()",
    ),
)
