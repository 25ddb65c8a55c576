"""The chat system's trigger function.

After a message is inserted it touches its conversation's ``updated_at`` and bumps the
unread counters of the other parties: a customer's message is unread for the owner and
the rider, an owner's for the customer and the rider, a rider's for the customer and the
owner; a system message changes no counter. The body is 004's, character for
character (PostgreSQL keeps it as written).
"""

from models.entities import Function

UPDATE_CONVERSATION_ON_MESSAGE_BODY = """
BEGIN
    UPDATE chat_conversations
    SET updated_at = NOW()
    WHERE id = NEW.conversation_id;

    IF NEW.sender_type = 'customer' THEN
        UPDATE chat_conversations
        SET unread_owner = unread_owner + 1,
            unread_rider = unread_rider + 1
        WHERE id = NEW.conversation_id;
    ELSIF NEW.sender_type = 'owner' THEN
        UPDATE chat_conversations
        SET unread_customer = unread_customer + 1,
            unread_rider = unread_rider + 1
        WHERE id = NEW.conversation_id;
    ELSIF NEW.sender_type = 'rider' THEN
        UPDATE chat_conversations
        SET unread_customer = unread_customer + 1,
            unread_owner = unread_owner + 1
        WHERE id = NEW.conversation_id;
    END IF;

    RETURN NEW;
END;
"""

FUNCTIONS = (
    Function(
        name="update_conversation_on_message",
        returns="trigger",
        language="plpgsql",
        body=UPDATE_CONVERSATION_ON_MESSAGE_BODY,
    ),
)
