import type { Role } from '../domain/events.js';

/** The read-model tables, one interface each; Kysely types every query from this. */
export interface UsersTable {
  id: string;
  username: string;
  email: string;
  role: Role;
  device_quota: number;
  password_hash: string;
  api_key_hash: string;
  created_at: string;
}

export interface SessionsTable {
  id: string;
  user_id: string;
  started_at: string;
  expires_at: string;
  ended_at: string | null;
}

export interface DevicesTable {
  id: string;
  user_id: string;
  name: string;
  device_type: string;
  description: string | null;
  ip_address: string | null;
  mac_address: string | null;
  status: string;
  last_seen: string | null;
  firmware_version: string | null;
  group_id: string | null;
  configuration: string;
  token_hash: string;
  created_at: string;
  updated_at: string;
  version: number;
}

export interface GroupsTable {
  id: string;
  user_id: string;
  name: string;
  description: string | null;
  parent_id: string | null;
  created_at: string;
  updated_at: string;
  version: number;
}

export interface ReadModels {
  users: UsersTable;
  sessions: SessionsTable;
  devices: DevicesTable;
  groups: GroupsTable;
}
