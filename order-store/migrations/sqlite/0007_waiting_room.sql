-- A campaign's waiting-room settings as JSON (engine::room::RoomConfig);
-- empty: no waiting room.
ALTER TABLE campaigns ADD COLUMN waiting_room TEXT NOT NULL DEFAULT '';
