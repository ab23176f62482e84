-- The developer-only settings that pause ehnsw inserts and VACUUM for the
-- isolation specs (docs/testing.md) are superuser-only, hidden, and off by
-- default: an ordinary role can neither set them nor make another session
-- wait with them.
CREATE ROLE regress_ehnsw_debug NOLOGIN;

SHOW vecphi.debug_ehnsw_vacuum_pause_lock;
SHOW vecphi.debug_ehnsw_insert_pause_lock;
SHOW vecphi.debug_ehnsw_insert_level;
SELECT count(*) AS listed FROM pg_settings WHERE name LIKE 'vecphi.debug_ehnsw%';

SET ROLE regress_ehnsw_debug;
SET vecphi.debug_ehnsw_vacuum_pause_lock = 1;
SET vecphi.debug_ehnsw_insert_pause_lock = 1;
SET vecphi.debug_ehnsw_insert_level = 0;
SELECT set_config('vecphi.debug_ehnsw_vacuum_pause_lock', '1', false);
ALTER ROLE regress_ehnsw_debug SET vecphi.debug_ehnsw_insert_pause_lock = 1;
SHOW vecphi.debug_ehnsw_vacuum_pause_lock;
RESET ROLE;

-- A superuser may; out of range is refused (key + 1 must stay an int).
SET vecphi.debug_ehnsw_vacuum_pause_lock = 2147483647;
SET vecphi.debug_ehnsw_insert_level = 16;
SET vecphi.debug_ehnsw_insert_level = 0;
RESET vecphi.debug_ehnsw_insert_level;
SHOW vecphi.debug_ehnsw_insert_level;

DROP ROLE regress_ehnsw_debug;
