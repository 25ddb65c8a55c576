"""The chat system's trigger functions.

``update_conversation_on_message()`` (004): after a message is inserted it touches its conversation's ``updated_at`` and bumps the
unread counters of the other parties: a customer's message is unread for the owner and
the rider, an owner's for the customer and the rider, a rider's for the customer and the
owner; a system message changes no counter. The body is 004's, character for
character (PostgreSQL keeps it as written).

``set_chat_conversation_customer_id()`` (c002): before a conversation is inserted
without customer_id, gives it 008's value, 'customer_' || customer_phone, else
'customer_unknown_' || id (the backend's delivery path sends none).
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

SET_CHAT_CONVERSATION_CUSTOMER_ID_BODY = """
BEGIN
    IF NEW.customer_id IS NULL THEN
        NEW.customer_id := COALESCE('customer_' || NEW.customer_phone,
                                    'customer_unknown_' || NEW.id::text);
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
    Function(
        name="set_chat_conversation_customer_id",
        returns="trigger",
        language="plpgsql",
        body=SET_CHAT_CONVERSATION_CUSTOMER_ID_BODY,
    ),
)
