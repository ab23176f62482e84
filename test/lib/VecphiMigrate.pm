# vecphi: the migration scenario shared by TAP 150 (pgvector sources) and
# 151 (real[], float8[] and text sources, no pgvector): a plaintext table
# of three tenants migrated with vecphi.migrate_column(), killed in the
# middle of one column and resumed, then checked: every row encrypted
# exactly once under its own tenant's key and decrypting to its original
# values, the state row, the audit records, and no plaintext byte of any
# row left in the table's files (heap, TOAST, indexes, and the files the
# table had before).
#
#   my $m = VecphiMigrate->new($node, columns => [ [emb => 'vector(16)', 16], ... ]);
#   $m->load(rows => 300);
#   $m->migrate_killed('emb', batch => 10, kill_after => 30);
#   $m->migrate('body');
#   $m->check_all;
package VecphiMigrate;

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use VecphiCheck;
use VecphiTest;

our @TENANTS = qw(mt_a mt_b mt_c);

# $node: started, vecphi (and pgvector if a column needs it) created.
# columns: [name, SQL type, dims (0 for text)] each.
sub new
{
	my ($class, $node, %o) = @_;
	my $self = bless { node => $node, columns => $o{columns}, rows => {} }, $class;
	$node->safe_psql('postgres', q{
		SELECT vecphi.create_tenant(t) FROM unnest(ARRAY['mt_a', 'mt_b', 'mt_c']) t;
		CREATE ROLE mig_admin LOGIN IN ROLE vecphi_key_admin;
		CREATE ROLE mig_owner LOGIN;
		CREATE ROLE mig_app LOGIN;
		GRANT CREATE ON SCHEMA public TO mig_admin;
	});
	my $cols = join(",\n", map { "$_->[0] $_->[1]" } @{ $o{columns} });
	$node->safe_psql('postgres', qq{
		CREATE TABLE docs (
			id int PRIMARY KEY,
			tenant text NOT NULL,
			$cols
		) WITH (autovacuum_enabled = off);
		ALTER TABLE docs OWNER TO mig_admin;
		GRANT SELECT ON docs TO mig_app;
	});
	return $self;
}

# A float4 value as PostgreSQL stores it, from a random number.
sub _f4 { return unpack('f<', pack('f<', $_[0])); }

# Fill the table: rows rows, tenants round-robin, every value distinct.
sub load
{
	my ($self, %o) = @_;
	my $n = $o{rows};
	$self->{n} = $n;
	my @lines;
	for my $id (1 .. $n)
	{
		my %row = (tenant => $TENANTS[ $id % 3 ]);
		for my $c (@{ $self->{columns} })
		{
			my ($name, $type, $dims) = @$c;
			if ($dims == 0)
			{
				$row{$name} = sprintf('note %d of %s: %08x%08x', $id, $row{tenant},
					int(rand(2**32)), int(rand(2**32)));
			}
			else
			{
				# float8[] keeps the decimal's double; the rest float4
				$row{$name} = [ map { 0 + sprintf('%.9g', _f4(rand(2) - 1)) } 1 .. $dims ];
			}
		}
		$self->{rows}{$id} = \%row;
	}
	# INSERT in chunks
	my @ids = (1 .. $n);
	while (my @chunk = splice(@ids, 0, 100))
	{
		my @values;
		for my $id (@chunk)
		{
			my $row = $self->{rows}{$id};
			my @v = ($id, "'$row->{tenant}'");
			for my $c (@{ $self->{columns} })
			{
				my ($name, $type, $dims) = @$c;
				if ($dims == 0) { push @v, "'$row->{$name}'"; }
				elsif ($type =~ /^vector/) { push @v, "'[" . join(',', @{ $row->{$name} }) . "]'"; }
				else { push @v, "'{" . join(',', @{ $row->{$name} }) . "}'"; }
			}
			push @values, '(' . join(', ', @v) . ')';
		}
		$self->{node}->safe_psql('postgres', 'INSERT INTO docs VALUES ' . join(",\n", @values));
	}
	$self->{node}->safe_psql('postgres', 'CHECKPOINT');
	$self->{old_files} = [ VecphiTest::relation_files($self->{node}, 'postgres', 'docs') ];
	return;
}

# The byte strings that identify a row's plaintext of a column on disk:
# the first and last four values (floats as stored), or the text.
sub patterns
{
	my ($self, $name) = @_;
	my ($c) = grep { $_->[0] eq $name } @{ $self->{columns} };
	my (undef, $type, $dims) = @$c;
	my @p;
	for my $row (values %{ $self->{rows} })
	{
		my $v = $row->{$name};
		if ($dims == 0) { push @p, $v; next; }
		my $fmt = $type =~ /^(float8|double)/ ? 'd<' : 'f<';
		push @p, pack("$fmt*", @{$v}[ 0 .. 3 ]);
		push @p, pack("$fmt*", @{$v}[ -4 .. -1 ]);
	}
	return @p;
}

# How many of the patterns of column $name some file of the table (now, or
# before the migration) contains.
sub plaintext_found
{
	my ($self, $name) = @_;
	$self->{node}->safe_psql('postgres', 'CHECKPOINT');
	my %files = map { $_ => 1 } @{ $self->{old_files} },
	  VecphiTest::relation_files($self->{node}, 'postgres', 'docs');
	my @contents;
	for my $f (grep { -f } sort keys %files)
	{
		open my $fh, '<:raw', $f or die "could not open \"$f\": $!";
		push @contents, do { local $/; <$fh> } // '';
		close $fh;
	}
	my $found = 0;
	for my $p ($self->patterns($name))
	{
		$found++ if grep { index($_, $p) >= 0 } @contents;
	}
	return $found;
}

sub admin_psql
{
	my ($self, $sql) = @_;
	return $self->{node}->safe_psql('postgres', $sql, extra_params => [ '-U', 'mig_admin' ]);
}

# Migrate a column in one call (search_path => '...': under that path).
sub migrate
{
	my ($self, $name, %o) = @_;
	my $batch = $o{batch} // 1000;
	my $path = $o{search_path} ? "SET search_path = $o{search_path};\n" : '';
	$self->admin_psql("${path}CALL vecphi.migrate_column('public.docs', '$name', 'tenant', $batch)");
	return;
}

# Start migrating $name in batches of $batch, slowed down by a trigger,
# terminate the backend once kill_after rows are done, check that the
# committed batches (and only they) are migrated, then resume to the end.
sub migrate_killed
{
	my ($self, $name, %o) = @_;
	my $node = $self->{node};
	$self->admin_psql(q{
		CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql
			AS $$BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END$$;
		CREATE TRIGGER slow_update BEFORE UPDATE ON docs
			FOR EACH ROW EXECUTE FUNCTION slow_update();
	});
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-U', 'mig_admin', '-d', $node->connstr('postgres'),
		  '-c', "CALL vecphi.migrate_column('docs', '$name', 'tenant', $o{batch})" ],
		'>', \$out, '2>', \$err);
	ok( $node->poll_query_until('postgres',
			"SELECT coalesce(max(rows_done), 0) >= $o{kill_after} FROM vecphi.migrations WHERE column_name = '$name'"),
		"$name: $o{kill_after} rows migrated before the kill");
	# The application keeps reading while batches run.
	is( $node->safe_psql('postgres', 'SELECT count(*) FROM docs', extra_params => [ '-U', 'mig_app' ]),
		$self->{n}, "$name: the application reads every row during the migration");
	is( $node->safe_psql('postgres', q{
			SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			 WHERE usename = 'mig_admin' AND query LIKE 'CALL vecphi.migrate_column%'}),
		'1', "$name: migrating backend terminated");
	$h->finish;
	like($err, qr/terminat/, "$name: the CALL was terminated");
	my $staging = "vecphi_migrating_$name";
	my ($done, $encrypted, $plain, $both) = split /\|/, $node->safe_psql('postgres', qq{
		SELECT (SELECT rows_done FROM vecphi.migrations WHERE column_name = '$name' AND finished IS NULL),
			count(*) FILTER (WHERE $staging IS NOT NULL),
			count(*) FILTER (WHERE $name IS NOT NULL),
			count(*) FILTER (WHERE $staging IS NOT NULL AND $name IS NOT NULL)
		  FROM docs});
	ok($done >= $o{kill_after} && $done < $self->{n}, "$name: killed part way ($done of $self->{n})");
	is($encrypted, $done, "$name: exactly the committed batches are encrypted");
	is($plain, $self->{n} - $done, "$name: the rest is still plaintext");
	is($both, 0, "$name: no row holds both plaintext and ciphertext");
	$self->admin_psql('DROP TRIGGER slow_update ON docs; DROP FUNCTION slow_update()');
	$self->admin_psql("CALL vecphi.migrate_column('docs', '$name', 'tenant', $o{batch})");
	return;
}

# Every row of column $name: encrypted under its own tenant's key, and
# decrypting (with that tenant's claims) to its original value.
sub check_values
{
	my ($self, $name) = @_;
	my $node = $self->{node};
	my ($c) = grep { $_->[0] eq $name } @{ $self->{columns} };
	my (undef, $type, $dims) = @$c;
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FILTER (WHERE split_part(vecphi.key_id($name), '/', 1) = tenant)
			  FROM docs}),
		$self->{n}, "$name: every row under its own tenant's key");
	my $bad = 0;
	my $seen = 0;
	for my $t (@TENANTS)
	{
		my $claims = VecphiCheck::claims_do(tenant => $t, role => 'clinician', sub => 'migrate_test');
		my $out = $node->safe_psql('postgres', qq{
			BEGIN;
			$claims
			SELECT id, vecphi.decrypt($name) FROM docs WHERE tenant = '$t';
			COMMIT;
		});
		for my $line (split /\n/, $out)
		{
			my ($id, $v) = split /\|/, $line, 2;
			my $orig = $self->{rows}{$id}{$name};
			$seen++;
			if ($dims == 0)
			{
				$bad++ if $v ne $orig;
				next;
			}
			$v =~ s/^\{|\}$//g;
			my @got = split /,/, $v;
			$bad++ if @got != @$orig
			  || grep { _f4($got[$_]) != _f4($orig->[$_]) } 0 .. $#got;
		}
	}
	is($seen, $self->{n}, "$name: every row decrypted by its tenant");
	is($bad, 0, "$name: every row decrypts to its original value");
	is( $node->safe_psql('postgres', qq{
			SELECT rows_done, rows_left, finished IS NOT NULL, scrubbed IS NOT NULL
			  FROM vecphi.migrations WHERE column_name = '$name'}),
		"$self->{n}|0|t|t", "$name: state row finished and scrubbed, every row counted once");
	is($self->plaintext_found($name), 0, "$name: no plaintext of any row left in the table's files");
	return;
}

# The audit log has the start, a record per batch, the finish and the scrub.
sub check_audit
{
	my ($self) = @_;
	my $node = $self->{node};
	$node->safe_psql('postgres', 'SELECT vecphi.audit_flush()');
	my ($records, $batches) = split /\|/, $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM vecphi.audit_log WHERE action = 'key_migrate'
				  AND detail LIKE '%batch of%'),
			(SELECT sum(batches) FROM vecphi.migrations)});
	ok($records >= $batches, "audit: a key_migrate record for each committed batch ($records >= $batches)");
	return;
}

# The refusals: the one-key ALTER TABLE, an owner who is not a key admin,
# an app role with a token for one tenant.
sub check_refusals
{
	my ($self, $name, $alter) = @_;
	my $node = $self->{node};
	my $claims = VecphiCheck::claims_do(tenant => 'mt_a', role => 'clinician', sub => 'migrate_test');
	like(VecphiCheck::error_of($node, 'postgres', "BEGIN; $claims $alter; COMMIT;"),
		qr/^0A000: cannot encrypt column "$name"/, "$name: $alter refuses");
	like(VecphiCheck::error_of($node, 'postgres', qq{
			SET ROLE mig_app; BEGIN; $claims
			CALL vecphi.migrate_column('docs', '$name', 'tenant');}),
		qr/^42501: permission denied for procedure migrate_column/,
		"$name: an app role with a token for mt_a cannot migrate");
	like(VecphiCheck::error_of($node, 'postgres', qq{
			SET ROLE mig_app; BEGIN; $claims
			SELECT vecphi.migrate_batch('docs', '$name', 10);}),
		qr/^42501: permission denied for function migrate_batch/,
		"$name: nor run a batch");
	$node->safe_psql('postgres', q{
		ALTER TABLE docs OWNER TO mig_owner;
		GRANT EXECUTE ON PROCEDURE vecphi.migrate_column(regclass, name, name, integer) TO mig_owner;
		GRANT EXECUTE ON FUNCTION vecphi.migrate_start(regclass, name, name) TO mig_owner;});
	like(VecphiCheck::error_of($node, 'postgres', qq{
			SET ROLE mig_owner; CALL vecphi.migrate_column('docs', '$name', 'tenant');}),
		qr/^42501: must be a member of vecphi_key_admin/,
		"$name: an owner who is not a key administrator is refused, even granted EXECUTE");
	$node->safe_psql('postgres', q{
		ALTER TABLE docs OWNER TO mig_admin;
		REVOKE EXECUTE ON PROCEDURE vecphi.migrate_column(regclass, name, name, integer) FROM mig_owner;
		REVOKE EXECUTE ON FUNCTION vecphi.migrate_start(regclass, name, name) FROM mig_owner;});
	# An app role that can write to the table (the tenant column) could
	# name another tenant in a row: refused while it can.
	$node->safe_psql('postgres', 'GRANT INSERT ON docs TO mig_app');
	like(VecphiCheck::error_of($node, 'postgres', qq{
			SET ROLE mig_admin; CALL vecphi.migrate_column('docs', '$name', 'tenant');}),
		qr/^55000: roles other than the owner of "docs" may write to it: mig_app/,
		"$name: refused while the app role may insert");
	$node->safe_psql('postgres', 'REVOKE INSERT ON docs FROM mig_app');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM vecphi.migrations'), '0',
		"$name: nothing started by the refused calls");
	return;
}

1;
