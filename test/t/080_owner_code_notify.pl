# vecphi: the owner of a protected table cannot make a claimant's session
# send it plaintext through NOTIFY (issue #11, section 3).
#
# The owner (a login role without claims) listens on a channel in its own
# session and tries to install code on its protected table that would call
# pg_notify() with decrypted values while a claimant works: a SECURITY
# DEFINER row trigger, a statement trigger harvesting every row the
# claimant's claims show, and a policy.  A claimant in another session then
# writes and reads as usual.  On main the owner's session received the
# plaintext; now every installation is refused (42501), each refusal is in
# the audit log, and the listener receives nothing but the control
# notification that shows it was listening.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

my $node = VecphiTest::new_node('owner_notify');
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION vecphi;
	SELECT vecphi.create_tenant('oc_a');
	CREATE ROLE oc_owner LOGIN;
	CREATE ROLE oc_app LOGIN;
	GRANT CREATE ON SCHEMA public TO oc_owner;
	SET ROLE oc_owner;
	CREATE TABLE notes (id int PRIMARY KEY,
		tenant text NOT NULL DEFAULT vecphi.tenant(), body etext);
	SELECT vecphi.protect('notes', 'tenant');
	GRANT SELECT, INSERT ON notes TO oc_app;
	CREATE FUNCTION spy_row() RETURNS trigger LANGUAGE plpgsql
		SECURITY DEFINER SET search_path = public, pg_catalog AS $$
	BEGIN
		PERFORM pg_notify('loot', 'row: ' || vecphi.decrypt(NEW.body));
		RETURN NEW;
	END $$;
	CREATE FUNCTION spy_all() RETURNS trigger LANGUAGE plpgsql
		SECURITY DEFINER SET search_path = public, pg_catalog AS $$
	BEGIN
		PERFORM pg_notify('loot', 'all: ' ||
			(SELECT string_agg(vecphi.decrypt(body), ',') FROM notes));
		RETURN NULL;
	END $$;
	CREATE FUNCTION spy_qual(v etext) RETURNS boolean LANGUAGE plpgsql
		SECURITY DEFINER SET search_path = public, pg_catalog AS $$
	BEGIN
		PERFORM pg_notify('loot', 'policy: ' || vecphi.decrypt(v));
		RETURN true;
	END $$;
});

# The owner's attempts, each in its own session as the owner.
my %attempts = (
	'row trigger' =>
	  'CREATE TRIGGER spy_row AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION spy_row()',
	'statement trigger' =>
	  'CREATE TRIGGER spy_all AFTER INSERT ON notes FOR EACH STATEMENT EXECUTE FUNCTION spy_all()',
	'policy' =>
	  'CREATE POLICY spy ON notes AS RESTRICTIVE FOR SELECT USING (spy_qual(body))',);
foreach my $what (sort keys %attempts)
{
	my $res = VecphiCheck::error_of($node, 'postgres',
		"SET ROLE oc_owner;\n$attempts{$what};");
	like(
		$res,
		qr/^42501: permission denied to change protected table "notes"/,
		"owner may not add a NOTIFY $what");
}

# The owner listens.
my $listener = $node->background_psql('postgres');
$listener->query_safe('SET ROLE oc_owner; LISTEN loot;');

# A claimant works in its own session.
my $claims = VecphiCheck::claims_do(
	tenant => 'oc_a',
	role => 'clinician',
	sub => 'dr_a');
my $read = $node->safe_psql(
	'postgres', qq{
	SET ROLE oc_app;
	BEGIN;
	$claims
	INSERT INTO notes (id, body) VALUES
		(1, vecphi.encrypt('secret note 1')), (2, vecphi.encrypt('secret note 2'));
	SELECT string_agg(vecphi.decrypt(body), ',' ORDER BY id) FROM notes;
	COMMIT;
});
is($read, 'secret note 1,secret note 2', 'the claimant reads and writes as usual');

# A control notification, so that a silent listener means something.
$node->safe_psql('postgres', "SELECT pg_notify('loot', 'control')");
my $heard = $listener->query('SELECT 1');
like($heard, qr/payload "control"/, 'the owner was listening');
unlike($heard, qr/secret note/, 'the owner heard no plaintext');
$listener->quit;

# Every refusal is audited.
my $denials = $node->safe_psql(
	'postgres', q{
	SELECT vecphi.audit_flush();
	SELECT count(*) FROM vecphi.audit_log
	WHERE action = 'denial' AND db_user = 'oc_owner'
	  AND detail LIKE 'permission denied to change protected table "notes"%';
});
like($denials, qr/\n3$/, 'the three refusals are in the audit log');

$node->stop;
done_testing();
