    const km_long km_thread = (km_long)thread_position_in_grid.x;
    const km_long km_group = (km_long)threadgroup_position_in_grid.x;
    const int km_local = (int)thread_position_in_threadgroup.x;
    const int km_group_size = (int)threads_per_threadgroup.x;
    const int km_lane = (int)thread_index_in_simdgroup;
