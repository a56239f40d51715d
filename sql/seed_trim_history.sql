-- Demo seeding: drop the contact_history written for earlier seeds before the new window's first day.
-- reads/writes: contact_history (contact_date < ds); params: ds DATE
DELETE FROM `{project}.{dataset}.contact_history` WHERE contact_date < @ds
